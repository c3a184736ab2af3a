import type { Command } from 'commander';
import type { ReplicateResult } from '../../engine/offsite-types';
import { examples, jobOptions, runJob, withClient, type JobFlags } from '../context';
import { replicateView } from '../offsite-views';
import { parseConcurrency } from './numbers';

export function registerReplicate(program: Command): void {
  jobOptions(program.command('replicate').argument('<source>', 'a snapshot (id or name), or a disk: all its available snapshots, oldest first'))
    .description('copy snapshots to a remote: only the blocks it does not hold yet, then each manifest')
    .requiredOption('--to <remote>', 'remote name')
    .option('--concurrency <n>', 'uploads in flight (1-64, default 4); memory is about n × 4 MiB')
    .addHelpText('after', `
Incremental by content: a block the remote holds (from any snapshot, disk or host sharing the
bucket) is never uploaded again. The manifest goes last, so an interrupted run leaves no half
snapshot on the remote, and a rerun skips what is already there.
${examples([
  'blocksnap replicate web1 --to offsite',
  'blocksnap replicate before-upgrade --to offsite --concurrency 8 --json',
])}`)
    .action(async (source: string, flags: JobFlags & { to: string; concurrency?: string }) => {
      const params: Record<string, unknown> = { source, remote: flags.to };
      if (flags.concurrency !== undefined) params.concurrency = parseConcurrency(flags.concurrency);
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'replicate', params, `replicate ${source}`);
        if (job !== null) out.result(job.result as ReplicateResult, replicateView);
      });
    });
}
