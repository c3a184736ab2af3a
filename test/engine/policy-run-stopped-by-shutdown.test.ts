/**
 * A scheduled run that the daemon's clean stop cancels (systemctl restart, an upgrade) is owed
 * again, as one a crash cut off is: its due time went as handled when the run started, and a
 * cancelled snapshot leaves nothing for the next start to find, so the backup was lost for good,
 * where a SIGKILL at the same moment got its catch-up.
 */
import t, { type Test } from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

/** An hourly policy's scheduled run on disk vm, its snapshot still scanning when this returns. */
async function scheduledRun(t: Test) {
  const f = await openSmallEngine(t);
  // Large enough that the scan is still running when the test stops it right after it starts.
  const d = await smallDisk(f, 'vm', 2048);
  const p = f.engine.policies.create({ name: 'hourly', hours: [...Array(24).keys()] });
  f.engine.policies.bind('hourly', ['vm']);
  await new Promise((r) => setTimeout(r, 5));
  const due = new Date();
  return { f, d, due, run: f.engine.policies.startScheduled(p.id, d.id, due, due) };
}

/** The disk's binding as the closed engine's catalog keeps it. */
function bindingAfter(t: Test, dataDir: string, diskId: string) {
  const catalog = Catalog.open(dataDir, KiB64);
  t.teardown(() => catalog.close());
  return new ModelCatalog(catalog).getBinding(diskId)!;
}

t.test('a scheduled run cancelled by the shutdown leaves its due time owed', async (t) => {
  const { f, d, due, run } = await scheduledRun(t);
  await f.engine.close();
  const event = await run.done;
  t.match(event, { outcome: 'failed', error: { code: 'Cancelled', message: /shutting down.*; the due time is taken again at the next start$/ } });
  t.equal(bindingAfter(t, f.dataDir, d.id).lastDueAt, new Date(due.getTime() - 1).toISOString(), 'handled only up to just before it: the next start takes it');
});

t.test('a scheduled run that a client cancels stays handled: only the stop is owed', async (t) => {
  const { f, d, due, run } = await scheduledRun(t);
  f.engine.cancelJob(run.job.id);
  const event = await run.done;
  t.match(event, { outcome: 'failed', error: { code: 'Cancelled' } });
  t.notMatch(event.error?.message, /taken again/);
  await f.engine.close();
  t.equal(bindingAfter(t, f.dataDir, d.id).lastDueAt, due.toISOString());
});
