import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { Disk } from '../../engine/types';
import { validateName } from '../../engine/names';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { diskDetails, diskTable } from '../views';

export function registerDisk(program: Command): void {
  const disk = program.command('disk').description('register, list and remove disk images');

  clientOptions(disk.command('add').argument('<path>', 'image file (relative paths are resolved here, not in the daemon)'))
    .description('register an image file as a disk')
    .option('--name <name>', 'disk name (default: from the file name)')
    .addOption(new Option('--format <format>', 'image format (default: detected)').choices(['raw', 'qcow2']))
    .addHelpText('after', examples([
      'blocksnap disk add /var/lib/libvirt/images/web1.img --name web1',
      'blocksnap disk add ./db.qcow2 --format qcow2 --json',
    ]))
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
    .description('unregister a disk (the image file is left alone)')
    .option('--delete-snapshots', 'also delete every snapshot of the disk')
    .addHelpText('after', examples(['blocksnap disk remove web1', 'blocksnap disk remove web1 --delete-snapshots']))
    .action(async (ref: string, flags: ClientFlags & { deleteSnapshots?: boolean }) => {
      await withClient(flags, async (client, out) => {
        const d = await client.call<Disk>('disk.remove', { disk: ref, deleteSnapshots: flags.deleteSnapshots === true });
        out.result(d, (v) => `Removed disk ${v.name} (${v.id}); the image file ${v.path} was not touched.`);
      });
    });
}
