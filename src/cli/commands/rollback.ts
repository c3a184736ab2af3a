import type { Command } from 'commander';
import type { Disk, Job, RollbackAbandoned } from '../../engine/types';
import { BlocksnapError } from '../../errors';
import type { DaemonClient } from '../../daemon/client';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { rollbackView } from '../views';

type RollbackFlags = JobFlags & { force?: boolean; abandon?: boolean };

export function registerRollback(program: Command): void {
  jobOptions(program.command('rollback').argument('<disk>', 'disk id or name')
    .argument('[snapshot]', 'snapshot id or name (of that disk); with --abandon it may be left out, and must be the unfinished rollback\'s if given'))
    .description('restore a disk image to a snapshot in place (stop the VM first)')
    .option('--force', 'roll back even while a QEMU process (a running VM, qemu-nbd) holds the image, or while the image is the backing file of other registered disks; for a copy-on-write disk, even while its writable export has NBD clients, which are disconnected')
    .option('--abandon', 'clear the journal of an unfinished rollback without finishing it; the image keeps what that rollback left')
    .addHelpText('after', examples([
      'blocksnap rollback web1 before-upgrade',
      'blocksnap rollback web1 s-0123456789abcdef --json',
      'blocksnap rollback web1 --abandon',
    ]) + '\nOnly blocks that differ from the snapshot are written (a qcow2 disk is rewritten as a fresh\nimage beside it and renamed over it, so it needs room for that image beside the disk: a\nrollback that would not fit is refused with NoSpace before it starts; the new image is thin,\nwhatever preallocation the old one had). An overlay\'s new image holds only what differs from\nits backing file, as the overlay did, but the room asked for is the snapshot\'s whole data, as\nhow much the backing file already holds is known only once the rollback has read it. The\ndisk takes the snapshot\'s size again: an image resized since is cut or extended to it. An\ninterrupted rollback is reported by `disk show`; run the same rollback again to finish it. A\nrollback is refused (DiskInUse) while QEMU holds the image open, unless --force is given.\n' +
      '\nA golden image, the backing file of other registered disks (linked clones made with\nqemu-img create -b), is refused (ImageIsBackingFile, naming them) unless --force is given:\nrolling it back changes what their guests see. A qcow2 image that is bind-mounted (a mount\npoint, or mounted elsewhere, as Firecracker\'s jailer does) is refused (ImageBindMounted): the\nmount would keep the old image. A rollback whose image path is renamed over while it runs\n(a raw one writing it, a qcow2 one before renaming its new image over it) fails\n(ImageReplaced) and stays unfinished: rerun it to roll back the file now at the path, or\nabandon it.\n' +
      '\nA raw disk is rewritten in place, once every stored block it needs has been read and checked:\na damaged or missing block in the store, or a cancel or a crash before the writing began, leaves\nthe disk as it was. A rollback cut off while it writes (a crash, a cancel, a write error) leaves it\npartly rolled back, and the disk refuses snapshots (RollbackIncomplete) until a rollback of it\ncompletes. A cancelled rollback says which. A qcow2 rollback cut off before its new image\nreplaced the disk file leaves the disk as it was, and it takes snapshots as before.\n' +
      '\nA qcow2 disk\'s new image gets the disk file\'s owner, group, mode, extended attributes, inode\nflags (chattr) and project id, or the rollback is refused (PermissionDenied) before it starts:\na daemon not running as root can give it only its own user and one of its groups, so it rolls\nback only a disk file of its own (run the daemon as root, or clone the snapshot instead).\n' +
      '\n--abandon gives up an unfinished rollback instead: the disk takes snapshots again and the\nimage keeps whatever the rollback left (raw: possibly a mix of blocks from before and from the\nsnapshot; qcow2: the image from before, unless the new one had already replaced it). Refused\nwhile a job runs on the disk, and when no rollback is unfinished (RollbackNotPending).\n')
    .action(async (disk: string, snapshot: string | undefined, flags: RollbackFlags) => {
      if (flags.abandon === true) {
        // An option that would not act is refused rather than dropped: the user meant something by it.
        const unused = [
          flags.force === true ? '--force' : null,
          flags.wait === false ? '--no-wait' : null,
          flags.detachOnInterrupt === true ? '--detach-on-interrupt' : null,
        ].filter((o) => o !== null);
        if (unused.length > 0) {
          throw new BlocksnapError('InvalidArgument', `rollback --abandon writes nothing and starts no job, so it takes no ${unused.join(', ')}`);
        }
        await withClient(flags, async (client, out) => {
          const r = await client.call<RollbackAbandoned>('rollback', { disk, abandon: true, ...(snapshot !== undefined ? { snapshot } : {}) });
          out.result(r, (v) => v.message);
        });
        return;
      }
      if (snapshot === undefined) throw new BlocksnapError('InvalidArgument', 'rollback needs a SNAPSHOT (or --abandon, to give up an unfinished rollback)');
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { disk, snapshot };
        if (flags.force) params.force = true;
        const job = await runJob(client, out, flags, 'rollback', params, `rollback ${disk}`, { cancelNote: (j) => cancelNote(client, j) });
        if (job !== null) out.result(job, rollbackView);
      });
    });
}

/** What cancelling the rollback `job` leaves, for the Ctrl-C prompt; null when there is nothing to warn of. */
async function cancelNote(client: DaemonClient, job: Job): Promise<string | null> {
  if (job.diskId === null) return null;
  const disk = await client.call<Disk>('disk.show', { disk: job.diskId }).catch(() => null);
  if (disk === null) return null;
  return rollbackCancelNote(disk);
}

export function rollbackCancelNote(disk: Pick<Disk, 'name' | 'format'>): string | null {
  if (disk.format === 'raw') {
    return `Once the rollback writes, cancelling leaves the image of ${disk.name} partly rolled back (the blocks written so far from the snapshot, ` +
      `the others as they are now), and the disk refusing snapshots until a rollback of it completes or is abandoned (blocksnap rollback ${disk.name} --abandon); ` +
      'before that, while it compares the image and checks the stored blocks, the disk is left as it was.';
  }
  if (disk.format === 'qcow2') return `Cancelling leaves ${disk.name} as it was: the new image is discarded before it replaces the disk file.`;
  return null;
}
