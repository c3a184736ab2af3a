import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { Disk, FlattenResult } from '../../engine/types';
import { validateName } from '../../engine/names';
import { clientOptions, examples, jobOptions, runJob, withClient, type ClientFlags, type JobFlags } from '../context';
import { diskDetails, diskTable, flattenView } from '../views';

export function registerDisk(program: Command): void {
  const disk = program.command('disk').description('register, list and remove disk images');

  clientOptions(disk.command('add').argument('<path>', 'image file (relative paths are resolved here, not in the daemon)'))
    .description('register an image file as a disk')
    .option('--name <name>', 'disk name (default: from the file name)')
    .addOption(new Option('--format <format>', 'image format (default: detected)').choices(['raw', 'qcow2']))
    .addHelpText('after', examples([
      'blocksnap disk add /var/lib/libvirt/images/web1.img --name web1',
      'blocksnap disk add ./db.qcow2 --format qcow2 --json',
    ]) + '\nWithout --format, an image that starts with QEMU\'s qcow2 magic (QFI\\xfb) is qcow2, any other\n' +
      'raw. A disk detected as raw whose image later starts with that magic (converted to qcow2 under\n' +
      'the same name) is refused by snapshot and rollback (NotAnImage) rather than read as raw bytes.\n' +
      'Give --format raw for a raw disk whose guest may write a qcow2 header at its very start (a\n' +
      'nested VM\'s image on a whole disk): it stays raw whatever it starts with. Given for the image\n' +
      'of a disk already registered as raw, --format raw confirms that choice in place (the disk and\n' +
      'its snapshots stay).\n' +
      'A disk keeps its image\'s real path. Given through a symlink (a Firecracker jailer\'s rootfs link, a\n' +
      'libvirt volume name), PATH is remembered too (givenPath in disk show): once it leads to another\n' +
      'file, snapshot and rollback are refused (PathNotAllowed) rather than read the old one, until\n' +
      'disk relocate says which file is the disk\'s image.\n' +
      'Block devices (LVM volumes, partitions, loop devices) are not supported yet: they are refused\n' +
      '(NotAnImage).\n')
    .action(async (path: string, flags: ClientFlags & { name?: string; format?: 'raw' | 'qcow2' }) => {
      if (flags.name !== undefined) validateName('disk', flags.name);
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { path: resolve(path) };
        if (flags.name !== undefined) params.name = flags.name;
        if (flags.format !== undefined) params.format = flags.format;
        const d = await client.call<Disk>('disk.add', params);
        out.result(d, (v) => `Registered disk ${v.name} (${v.id}).\n${diskDetails(v)}`);
      });
    });

  clientOptions(disk.command('list'))
    .alias('ls')
    .description('list registered disks')
    .addHelpText('after', examples(['blocksnap disk list', 'blocksnap disk list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Disk[]>('disk.list'), diskTable));
    });

  clientOptions(disk.command('show').argument('<disk>', 'disk id or name'))
    .description('show one disk')
    .addHelpText('after', examples(['blocksnap disk show web1', 'blocksnap disk show d-3f2a9c0b1d4e5f60 --json']))
    .action(async (ref: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<Disk>('disk.show', { disk: ref }), diskDetails));
    });

  clientOptions(disk.command('remove').argument('<disk>', 'disk id or name'))
    .alias('rm')
    .description('unregister a disk (an image file is left alone; a copy-on-write disk\'s overlay files are deleted)')
    .option('--delete-snapshots', 'also delete every snapshot of the disk')
    .option('--discard-writes', 'remove a copy-on-write disk even though it holds writes no snapshot has (they are deleted)')
    .addHelpText('after', examples(['blocksnap disk remove web1', 'blocksnap disk remove web1 --delete-snapshots', 'blocksnap disk remove web1-test --discard-writes']) +
      '\nA copy-on-write disk (clone --cow) is its overlay files: what was written to it since its last snapshot\n' +
      'exists nowhere else, so removing one that holds such writes is refused without --discard-writes.\n')
    .action(async (ref: string, flags: ClientFlags & { deleteSnapshots?: boolean; discardWrites?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const d = await client.call<Disk>('disk.remove', { disk: ref, deleteSnapshots: flags.deleteSnapshots === true, discardWrites: flags.discardWrites === true });
        out.result(d, (v) => (v.cow
          ? `Removed copy-on-write disk ${v.name} (${v.id}) and its overlay files.`
          : `Removed disk ${v.name} (${v.id}); the image file ${v.path} was not touched.`));
      });
    });

  clientOptions(disk.command('relocate').argument('<disk>', 'disk id or name').argument('<path>', 'the image file the disk is now (relative paths are resolved here)'))
    .description('point a disk at its image\'s new path, keeping its snapshots')
    .addHelpText('after', examples([
      'blocksnap disk relocate web1 /srv/images/web1.img',
      'blocksnap disk relocate vm1 /var/lib/libvirt/images/vm1.snap1.qcow2',
    ]) + '\nFor an image that was moved (a storage move that left a symlink behind), or replaced under the\n' +
      'path the disk was registered by (a libvirt external snapshot, a retargeted Firecracker jailer\n' +
      'link): snapshot and rollback refuse such a disk (PathNotAllowed) until it is relocated.\n' +
      'PATH must pass every check of disk add (inside an image root, a regular file, no other disk\'s\n' +
      'image, its backing files inside the roots) and have the disk\'s format (NotAnImage otherwise).\n' +
      'The snapshots stay valid, since they hold the guest\'s blocks by content: the next snapshot is an\n' +
      'increment over the last one, of whatever differs in the new image. Refused while a job runs on\n' +
      'the disk (DiskBusy) and while a rollback of it is unfinished (RollbackIncomplete). Given through a\n' +
      'symlink, PATH is remembered as disk add remembers it (givenPath): once it leads to another file,\n' +
      'snapshot and rollback are refused again until the next relocate.\n')
    .action(async (ref: string, path: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        const d = await client.call<Disk>('disk.relocate', { disk: ref, path: resolve(path) });
        out.result(d, (v) => `Relocated disk ${v.name} (${v.id}); its snapshots stay.\n${diskDetails(v)}`);
      });
    });

  jobOptions(disk.command('flatten').argument('<disk>', 'copy-on-write disk id or name').argument('<path>', 'new image file (must not exist)'))
    .description('write a copy-on-write disk, as of now, out as a standalone image file')
    .addOption(new Option('--format <format>', 'format of the new image').choices(['raw', 'qcow2']).default('raw'))
    .addHelpText('after', examples([
      'blocksnap disk flatten web1-test /var/lib/libvirt/images/web1-test.img',
      'blocksnap disk flatten web1-test ./web1-test.qcow2 --format qcow2',
    ]) + '\nThe disk may be exported and written meanwhile: the image holds what it read at the start.\n' +
      'The image is written beside PATH without a name and takes the name PATH only once complete.\n' +
      'While it runs, the disk takes no snapshot and no rollback (DiskBusy). Its start freezes the\n' +
      'disk\'s overlay as a snapshot does; when it ends (or is cancelled), that layer is folded back\n' +
      'unless the disk was written meanwhile: then it stays until the next snapshot or rollback.\n')
    .action(async (ref: string, path: string, flags: JobFlags & { format: 'raw' | 'qcow2' }) => {
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'disk.flatten', { disk: ref, path: resolve(path), format: flags.format }, `flatten ${ref}`);
        if (job !== null) out.result(job.result as FlattenResult, flattenView);
      });
    });
}
