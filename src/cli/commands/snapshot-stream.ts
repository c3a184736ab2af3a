import { resolve } from 'node:path';
import type { Command } from 'commander';
import { BlocksnapError } from '../../errors';
import type { ExportResult, ImportResult } from '../../engine/offsite-types';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { exportView, importView } from '../offsite-views';

/**
 * The daemon reads and writes stream files itself, inside its image roots (it usually runs as root
 * and must not open files its socket users could not name); so "-" (stdin/stdout) is refused with
 * a hint rather than half supported. docs/stream-format.md says why.
 */
function streamPath(option: string, value: string): string {
  if (value === '-') {
    throw new BlocksnapError('InvalidArgument', `${option} - is not supported: the daemon writes and reads stream files inside an image root; name a file there and copy it with any tool`);
  }
  return resolve(value);
}

export function registerSnapshotStreams(program: Command): void {
  const snapshot = program.commands.find((c) => c.name() === 'snapshot');
  if (!snapshot) throw new Error('the snapshot command must be registered first');

  jobOptions(snapshot.command('export').argument('<snapshot>', 'snapshot id or name'))
    .description('write a snapshot as a stream file: its block map and the blocks BASE lacks (all blocks without --from)')
    .requiredOption('-o, --output <file>', 'new stream file inside an image root (must not exist)')
    .option('--from <base>', 'a snapshot of the same disk that the receiving host has: an incremental stream')
    .addHelpText('after', examples([
      'blocksnap snapshot export monday -o /var/lib/libvirt/images/web1-monday.bsnap',
      'blocksnap snapshot export tuesday --from monday -o /var/lib/libvirt/images/web1-tuesday.bsnap',
      'scp /var/lib/libvirt/images/web1-tuesday.bsnap host2:/var/lib/libvirt/images/',
    ]))
    .action(async (ref: string, flags: JobFlags & { output: string; from?: string }) => {
      const path = streamPath('-o', flags.output);
      await withClient(flags, async (client, out) => {
        const params: Record<string, unknown> = { snapshot: ref, path };
        if (flags.from !== undefined) params.base = flags.from;
        const job = await runJob(client, out, flags, 'snapshot.export', params, `export ${ref}`);
        if (job !== null) out.result(job.result as ExportResult, exportView);
      });
    });

  jobOptions(snapshot.command('import'))
    .description('recreate a snapshot from a stream file (same id and content), on top of its base, under a local disk')
    .requiredOption('-i, --input <file>', 'stream file inside an image root')
    .requiredOption('--disk <disk>', 'local disk the snapshot joins (id or name)')
    .addHelpText('after', examples([
      'blocksnap snapshot import -i /var/lib/libvirt/images/web1-monday.bsnap --disk web1',
      'blocksnap snapshot import -i /var/lib/libvirt/images/web1-tuesday.bsnap --disk web1 --json',
    ]))
    .action(async (flags: JobFlags & { input: string; disk: string }) => {
      const path = streamPath('-i', flags.input);
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'snapshot.import', { path, disk: flags.disk }, `import ${flags.input}`);
        if (job !== null) out.result(job.result as ImportResult, importView);
      });
    });
}
