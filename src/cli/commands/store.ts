import type { Command } from 'commander';
import type { GcResult, StoreStats, VerifyResult } from '../../engine/types';
import { EXIT } from '../exit-status';
import { clientOptions, examples, jobOptions, runJob, withClient, type ClientFlags, type JobFlags } from '../context';
import { resolve } from 'node:path';
import type { CatalogAccepted, CatalogBackup } from '../../engine/types';
import { catalogAcceptedView, catalogBackupView, gcView, storeStatsView, verifyView } from '../views';

export function registerStore(program: Command): void {
  const store = program.command('store').description('the content-addressed block store');

  clientOptions(store.command('stats'))
    .description('the distinct blocks snapshots reference and their size (a crash\'s leftovers, which store gc reclaims, are not counted: store verify counts them)')
    .addHelpText('after', examples(['blocksnap store stats', 'blocksnap store stats --json']) +
      '\nFreed block files the sweep could not unlink (a directory with entries under a block\'s name, an immutable file) are listed\n' +
      'with their cause under pending free: remove them by hand, then run store gc.\n')
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<StoreStats>('store.stats'), storeStatsView));
    });

  jobOptions(store.command('gc'))
    .description('remove block files no snapshot references (left by a crash mid-snapshot or mid-delete; failed and cancelled snapshots free their own) and temp files')
    .addHelpText('after', examples(['blocksnap store gc', 'blocksnap store gc --json']) +
      '\nSays how many of the removed blocks a crash left (orphans). An entry it cannot remove or read is listed with its path\n' +
      'and cause, to remove by hand, and the rest are reclaimed all the same; entries under the store that are no block\'s are\n' +
      'counted, a few named, and left alone.\n')
    .action(async (flags: JobFlags) => {
      await withClient(flags, async (client, out) => {
        const job = await runJob(client, out, flags, 'store.gc', {}, 'gc');
        if (job !== null) out.result(job.result as GcResult, gcView);
      });
    });

  clientOptions(store.command('backup-catalog').argument('<path>', 'a new file (never replaced)'))
    .description('write a consistent copy of the running daemon\'s catalog to a new file (root or the daemon\'s user)')
    .addHelpText('after', examples(['blocksnap store backup-catalog /srv/backup/blocksnap-catalog.mdb']) +
      '\nThe blocks in the store are of no use without the catalog (their block maps are only in it), so keep its backups off\n' +
      'the data dir\'s disk, or replicate snapshots to a remote. A copy made with cp or rsync while the daemon runs may be torn.\n' +
      'To restore: stop the daemon, put the copy in place as <data-dir>/catalog.mdb (mode 0600, the daemon\'s user), start it: if\n' +
      'the store changed since the copy, the daemon holds deletions and says so; store accept-catalog then lets gc go on.\n')
    .action(async (path: string, flags: ClientFlags) => {
      await withClient(flags, async (client, out) =>
        out.result(await client.call<CatalogBackup>('catalog.backup', { path: resolve(path) }), catalogBackupView));
    });

  clientOptions(store.command('accept-catalog'))
    .description('take the catalog as the block store\'s after the daemon held deletions for it (CatalogMismatch); root or the daemon\'s user')
    .addHelpText('after', examples(['blocksnap store stats', 'blocksnap store accept-catalog']) +
      '\nstore stats says why deletions are held. Accepted, the catalog decides alone again: store gc deletes every block it does not\n' +
      'reference (those of snapshots only another or a newer catalog knew), and deletes free blocks as before. Put back the right\n' +
      'catalog instead if there is one; import from a remote what you need first otherwise.\n')
    .action(async (flags: ClientFlags) => {
      await withClient(flags, async (client, out) => out.result(await client.call<CatalogAccepted>('catalog.accept'), catalogAcceptedView));
    });

  jobOptions(store.command('verify'))
    .description('re-read every referenced block and check it against its digest')
    .addHelpText('after', examples(['blocksnap store verify', 'blocksnap store verify --json']) +
      '\nExits 1 when a damaged or missing block is found; the output names it and the snapshots using it.\n' +
      'Also counts block files no snapshot references: those no delete freed (left by a crash; store gc removes them) apart from\n' +
      'freed ones the sweep has not unlinked yet; and entries under the store that are no block\'s.\n')
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
