import type { Command } from 'commander';
import type { ExportInfo } from '../../engine/exports';
import { validateExportName } from '../../engine/names';
import { clientOptions, examples, withClient, type ClientFlags } from '../context';
import { details, formatBytes, relativeTime, table } from '../format';

/** `nbdSocket`: what the daemon's `version` says, asked only for an empty list (absent from older daemons). */
function exportTable(list: ExportInfo[], nbdSocket?: string | null): string {
  if (list.length === 0) {
    if (nbdSocket === null) return 'No exports: the daemon serves no NBD socket. Restart it with --nbd-socket PATH to export snapshots and copy-on-write disks.';
    if (nbdSocket === undefined) return 'No exports (the daemon serves them only when started with --nbd-socket PATH).';
    return 'No exports. Serve a snapshot with: blocksnap export start SNAPSHOT, or a copy-on-write disk with: blocksnap export start DISK --writable';
  }
  return table(list, [
    { header: 'name', value: (e) => e.name },
    { header: 'snapshot', value: (e) => e.snapshotId ?? '(disk)' },
    { header: 'size', value: (e) => formatBytes(e.sizeBytes), align: 'right' },
    { header: 'mode', value: (e) => (e.writable ? 'rw' : 'ro') },
    { header: 'clients', value: (e) => String(e.connections), align: 'right' },
    { header: 'started', value: (e) => relativeTime(e.startedAt) },
    { header: 'uri', value: (e) => e.uri },
  ]);
}

function exportDetails(e: ExportInfo): string {
  return details([
    ['name', e.name], ['snapshot', e.snapshotId ?? '(none: the disk itself)'], ['disk', e.diskId], ['size', formatBytes(e.sizeBytes)],
    ['mode', e.writable ? 'read-write' : 'read-only'], ['clients', String(e.connections)], ['uri', e.uri],
  ]);
}

export function registerExport(program: Command): void {
  const exp = program.command('export').description('serve snapshots and copy-on-write disks over NBD (the daemon needs --nbd-socket)');

  clientOptions(exp.command('start').argument('<snapshot>', 'snapshot id or name; with --writable, a copy-on-write disk'))
    .description('serve a snapshot read-only, or a copy-on-write disk read-write (--writable), under an export name')
    .option('--name <name>', 'export name (default: the snapshot id, or the disk name)')
    .option('--writable', 'serve a copy-on-write disk (clone --cow) read-write')
    .addHelpText('after', examples([
      'blocksnap export start before-upgrade --name web1-before',
      'qemu-img info "nbd+unix:///web1-before?socket=/run/blocksnap/nbd.sock"',
      'blocksnap export start web1-test --writable',
    ]) + '\nThe snapshot cannot be deleted while it is exported. A disk has at most one writable export;\n' +
      '`snapshot create DISK` takes a point-in-time snapshot of it while it is served.\n')
    .action(async (ref: string, flags: ClientFlags & { name?: string; writable?: boolean }) => {
      if (flags.name !== undefined) validateExportName(flags.name);
      await withClient(flags, async (client, out) => {
        const params = flags.writable === true ? { disk: ref, writable: true } : { snapshot: ref };
        out.result(await client.call<ExportInfo>('export.start', { ...params, ...(flags.name !== undefined ? { name: flags.name } : {}) }), exportDetails);
      });
    });

  clientOptions(exp.command('list'))
    .description('exports being served, with their clients')
    .addHelpText('after', examples(['blocksnap export list', 'blocksnap export list --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => {
        const list = await client.call<ExportInfo[]>('export.list');
        // Only the daemon knows whether it serves NBD; an empty list asks it.
        const nbdSocket = list.length === 0 ? (await client.call<{ nbdSocket?: string | null }>('version')).nbdSocket : undefined;
        out.result(list, (l) => exportTable(l, nbdSocket));
      });
    });

  clientOptions(exp.command('stop').argument('<name>', 'export name'))
    .description('stop serving an export; its clients are disconnected')
    .addHelpText('after', examples(['blocksnap export stop web1-before']))
    .action(async (name: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<ExportInfo>('export.stop', { name }),
        (e) => `Stopped export ${e.name} (${e.snapshotId ?? e.diskId}).`));
    });
}
