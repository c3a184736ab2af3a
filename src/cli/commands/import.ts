import type { Command } from 'commander';
import type { ImportResult } from '../../engine/offsite-types';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { importView } from '../offsite-views';
import { parseConcurrency } from './numbers';

export function registerImport(program: Command): void {
  jobOptions(program.command('import').argument('<remote>', 'remote name').argument('<snapshot>', 'remote snapshot id or unique name'))
    .description('bring a snapshot from a remote into the local store, under a local disk (only missing blocks are downloaded); ' +
      'a snapshot that is here already with the same block map (--disk its disk) is mended instead: its damaged or missing blocks are downloaded again, nothing else changes')
    .requiredOption('--disk <disk>', 'local disk the snapshot joins (id or name); roll it back or clone the snapshot afterwards')
    .option('--concurrency <n>', 'downloads in flight (1-64, default 4)')
    .addHelpText('after', examples([
      'blocksnap import offsite s-0123456789abcdef --disk web1',
      'blocksnap import offsite before-upgrade --disk web1 --json',
    ]))
    .action(async (remote: string, snapshot: string, flags: JobFlags & { disk: string; concurrency?: string }) => {
      const params: Record<string, unknown> = { remote, snapshot, disk: flags.disk };
      if (flags.concurrency !== undefined) params.concurrency = parseConcurrency(flags.concurrency);
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'import', params, `import ${snapshot}`);
        if (job !== null) out.result(job.result as ImportResult, (r) => importView(r, remote));
      });
    });
}
