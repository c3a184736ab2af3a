import type { Command } from 'commander';
import type { GcResult, StoreStats, VerifyResult } from '../../engine/types';
import { EXIT } from '../exit-status';
import { clientOptions, examples, jobOptions, runJob, withClient, type ClientFlags, type JobFlags } from '../context';
import { gcView, storeStatsView, verifyView } from '../views';

export function registerStore(program: Command): void {
  const store = program.command('store').description('the content-addressed block store');

  clientOptions(store.command('stats'))
    .description('the distinct blocks snapshots reference and their size (a crash\'s leftovers, which store gc reclaims, are not counted)')
    .addHelpText('after', examples(['blocksnap store stats', 'blocksnap store stats --json']))
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<StoreStats>('store.stats'), storeStatsView));
    });

  jobOptions(store.command('gc'))
    .description('remove block files no snapshot references (left by a crash mid-snapshot or mid-delete; failed and cancelled snapshots free their own) and temp files')
    .addHelpText('after', examples(['blocksnap store gc', 'blocksnap store gc --json']))
    .action(async (flags: JobFlags) => {
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'store.gc', {}, 'gc');
        if (job !== null) out.result(job.result as GcResult, gcView);
      });
    });

  jobOptions(store.command('verify'))
    .description('re-read every referenced block and check it against its digest')
    .addHelpText('after', examples(['blocksnap store verify', 'blocksnap store verify --json']) +
      '\nExits 1 when a damaged or missing block is found; the output names it and the snapshots using it.\n')
    .action(async (flags: JobFlags) => {
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'store.verify', {}, 'verify');
        if (job === null) return;
        const r = job.result as VerifyResult;
        out.result(r, verifyView);
        if (r.problems.length > 0) process.exitCode = EXIT.failed;
      });
    });
}
