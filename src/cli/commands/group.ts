import type { Command } from 'commander';
import { BlocksnapError, isErrorCode } from '../../errors';
import type { Group, GroupRollback } from '../../engine/groups';
import type { Disk, Job } from '../../engine/types';
import { validateManualSnapshotName } from '../../engine/names';
import type { DaemonClient } from '../../daemon/client';
import { clientOptions, detachOption, examples, withClient, type ClientFlags, type JobFlags } from '../context';
import { EXIT } from '../exit-status';
import { followCall, InterruptedWait } from '../follow';
import { groupDetails, groupRollbackView, groupTable } from '../model-views';

const CREATE_CANCEL_NOTE = 'Cancelling stops every member snapshot: the group ends in status error and its partial members are removed ' +
  '(a copy-on-write disk\'s finished member, its base, is kept as a plain snapshot of it); the disks are not touched.';

const ROLLBACK_CANCEL_NOTE = 'Cancelling stops every member rollback: a disk whose rollback finished stays rolled back; a raw disk whose rollback ' +
  'is writing is left partly rolled back and refuses snapshots until a rollback of it completes or is abandoned; the others are left as they were.';

const CREATE_INTERRUPT_HELP = `
Ctrl-C asks, on a terminal, whether to cancel the member snapshots, detach (leave them
running) or keep waiting; without a terminal it cancels them, unless --detach-on-interrupt is
given. A cancelled group ends in status error with its partial members removed, as a failed
one (a copy-on-write disk's finished member, which is its base, leaves the group and is kept as
a plain snapshot of that disk). Either way it exits 130 (SIGTERM, SIGHUP: see blocksnap --help).
`;

const ROLLBACK_INTERRUPT_HELP = `
Ctrl-C asks, on a terminal, whether to cancel every member rollback, detach (leave them
running) or keep waiting; without a terminal it cancels them, unless --detach-on-interrupt is
given. A cancel says what each disk was left in: rolled back (its rollback had finished), as
it was, or partly rolled back (a raw disk whose rollback was writing), which refuses snapshots
until a rollback of it completes or is abandoned (blocksnap rollback DISK --abandon). Either
way it exits 130 (SIGTERM, SIGHUP: see blocksnap --help).
`;

export function registerGroup(program: Command): void {
  const group = program.command('group').description('snapshot groups: several disks of one VM snapshotted, rolled back and deleted together');

  detachOption(clientOptions(group.command('create').argument('<disks...>', 'disk ids or names (all disks of the VM)')), 'the member snapshot jobs')
    .description('snapshot several disks together; all member snapshots start only when every disk is free. Copy-on-write disks are cut at one instant (consistency point-in-time); image files are each read at their own moment (per-disk)')
    .option('--name <name>', 'group name, also the name of each member snapshot (default: group-<UTC time>)')
    .option('--description <text>', 'free text kept with the group and its snapshots (at most 1024 characters, no control characters)')
    .option('--no-wait', 'print the group as started and return at once')
    .addHelpText('after', examples([
      'blocksnap group create web1-root web1-data --name before-upgrade',
      'blocksnap group create web1-root web1-data web1-logs --description "release 42" --json',
    ]) + '\nEither every member becomes available, or the group ends in status error and its\npartial members are removed (a copy-on-write disk\'s finished member, which is its base, is\nkept as a plain snapshot of that disk; the error names it). Fails with DiskBusy, starting nothing, if any disk is busy.\n' + CREATE_INTERRUPT_HELP)
    .action(async (disks: string[], flags: JobFlags & { name?: string; description?: string }) => {
      if (flags.name !== undefined) validateManualSnapshotName(flags.name, 'group');
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { disks, wait: flags.wait };
        if (flags.name !== undefined) params.name = flags.name;
        if (flags.description !== undefined) params.description = flags.description;
        let g: Group;
        if (!flags.wait) {
          g = await client.call<Group>('group.create', params);
        } else {
          const r = await followCall<Group>(client, 'group.create', params, {
            label: `group snapshot of ${disks.join(', ')}`, detachOnInterrupt: flags.detachOnInterrupt === true, cancelNote: CREATE_CANCEL_NOTE,
          });
          g = r.result;
          if (r.cancelRequested && g.status === 'error' && g.error?.code === 'Cancelled') {
            const kept = g.snapshotIds.length === 0 ? ''
              : ` but ${g.snapshotIds.length} in use, which stay in it until they are free and: blocksnap group delete ${g.id}`;
            // The group's error names a copy-on-write disk's member that left the group as a plain snapshot.
            throw new InterruptedWait(r.jobs, true, `group ${g.name} (${g.id}) was cancelled (jobs ${r.jobs.map((j) => j.id).join(', ')}): ` +
              `it reads error and its partial members were removed${kept}; the disks were not touched. The group's error: ${g.error.message}`, r.signal);
          }
        }
        if (g.status === 'error' && g.error) {
          throw new BlocksnapError(isErrorCode(g.error.code) ? g.error.code : 'Internal', `group ${g.name} (${g.id}) failed: ${g.error.message}`, { groupId: g.id });
        }
        out.result(g, (v) => `${v.status === 'available' ? 'Created' : 'Started'} group ${v.name} (${v.id}).\n${groupDetails(v)}`);
      });
    });

  clientOptions(group.command('list'))
    .alias('ls')
    .description('list snapshot groups')
    .addHelpText('after', examples(['blocksnap group list', 'blocksnap group list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Group[]>('group.list', {}), groupTable));
    });

  clientOptions(group.command('show').argument('<group>', 'group id or name'))
    .description('show a group and its member snapshots')
    .addHelpText('after', examples(['blocksnap group show before-upgrade', 'blocksnap group show g-0123456789abcdef --json']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Group>('group.show', { group: ref }), groupDetails));
    });

  detachOption(clientOptions(group.command('rollback').argument('<group>', 'group id or name')), 'the member rollback jobs')
    .description('roll every member disk back to its member snapshot (stop the VM first)')
    .option('--no-wait', 'print the started rollback jobs and return at once')
    .option('--force', 'roll back even while a QEMU process holds an image, or a member\'s image is the backing file of other registered disks; drops the NBD clients of copy-on-write members\' writable exports')
    .addHelpText('after', examples(['blocksnap group rollback before-upgrade', 'blocksnap group rollback before-upgrade --json']) +
      '\nRefuses, starting nothing, unless every disk passes the rollback checks (free, image in\nplace, not open in QEMU, member available, not the backing file of other registered disks\n(ImageIsBackingFile, unless --force), and for qcow2 not bind-mounted (ImageBindMounted) nor\nhard-linked (ImageHasHardLinks)). Exits 1 when any member rollback failed.\n' + ROLLBACK_INTERRUPT_HELP)
    .action(async (ref: string, flags: JobFlags & { force?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const params = { group: ref, wait: flags.wait, ...(flags.force ? { force: true } : {}) };
        let r: GroupRollback;
        if (!flags.wait) {
          r = await client.call<GroupRollback>('group.rollback', params);
        } else {
          const f = await followCall<GroupRollback>(client, 'group.rollback', params, {
            label: `group rollback ${ref}`, detachOnInterrupt: flags.detachOnInterrupt === true, cancelNote: ROLLBACK_CANCEL_NOTE,
          });
          r = f.result;
          if (f.cancelRequested && r.jobs.some((j) => j.state === 'cancelled')) {
            throw new InterruptedWait(r.jobs, true, `group rollback ${ref} was cancelled:\n${await disksLeft(client, r.jobs)}`, f.signal);
          }
        }
        out.result(r, groupRollbackView);
        if (flags.wait && r.jobs.some((j) => j.state !== 'succeeded')) process.exitCode = EXIT.failed;
      });
    });

  clientOptions(group.command('delete').argument('<group>', 'group id or name'))
    .alias('rm')
    .description('delete a group and all its member snapshots')
    .addHelpText('after', examples(['blocksnap group delete before-upgrade']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        out.result(await client.call<Group>('group.delete', { group: ref }), (g) => `Deleted group ${g.name} (${g.id}) and its ${g.snapshotIds.length} snapshot(s).`);
      });
    });
}

/**
 * What each member disk of a cancelled group rollback was left in, read back from the daemon
 * rather than guessed from the job: whether a cancelled rollback had begun writing shows only in
 * the disk's journal (pendingRollback).
 */
async function disksLeft(client: DaemonClient, jobs: Job[]): Promise<string> {
  const lines = await Promise.all(jobs.map(async (j) => {
    const disk = await client.call<Disk>('disk.show', { disk: j.diskId }).catch(() => null);
    const name = disk?.name ?? j.diskId ?? '?';
    const head = `  ${name}: rollback ${j.state} (job ${j.id})`;
    if (j.state === 'succeeded') return `${head}; rolled back to its member snapshot`;
    if (disk === null) return `${head}; its state could not be read (blocksnap disk show ${name})`;
    const p = disk.pendingRollback;
    if (p === null) return `${head}; left as it was`;
    return `${head}; partly rolled back: it refuses snapshots until a rollback of it completes ` +
      `(blocksnap rollback ${name} ${p.snapshotId}) or is abandoned (blocksnap rollback ${name} --abandon)`;
  }));
  return lines.join('\n');
}
