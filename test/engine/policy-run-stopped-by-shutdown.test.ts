/**
 * A scheduled run that the daemon's clean stop cancels (systemctl restart, an upgrade) is owed
 * again, as one a crash cut off is: its due time went as handled when the run started, and a
 * cancelled snapshot leaves nothing for the next start to find, so the backup was lost for good,
 * where a SIGKILL at the same moment got its catch-up.
 */
import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

t.test('a scheduled run cancelled by the shutdown leaves its due time owed', async (t) => {
  const f = await openSmallEngine(t);
  // Large enough that the scan is still running when the engine closes right after it starts.
  const d = await smallDisk(f, 'vm', 2048);
  const p = f.engine.policies.create({ name: 'hourly', hours: [...Array(24).keys()] });
  f.engine.policies.bind('hourly', ['vm']);
  await new Promise((r) => setTimeout(r, 5));
  const due = new Date();

  const run = f.engine.policies.startScheduled(p.id, d.id, due, due);
  await f.engine.close();
  const event = await run.done;
  t.match(event, { outcome: 'failed', error: { code: 'Cancelled', message: /shutting down.*; the due time is taken again at the next start$/ } });

  const catalog = Catalog.open(f.dataDir, KiB64);
  t.teardown(() => catalog.close());
  const binding = new ModelCatalog(catalog).getBinding(d.id)!;
  t.equal(binding.lastDueAt, new Date(due.getTime() - 1).toISOString(), 'handled only up to just before it: the next start takes it');
});

t.test('a scheduled run that a client cancels stays handled: only the stop is owed', async (t) => {
  const f = await openSmallEngine(t);
  const d = await smallDisk(f, 'vm', 2048);
  const p = f.engine.policies.create({ name: 'hourly', hours: [...Array(24).keys()] });
  f.engine.policies.bind('hourly', ['vm']);
  await new Promise((r) => setTimeout(r, 5));
  const due = new Date();

  const run = f.engine.policies.startScheduled(p.id, d.id, due, due);
  f.engine.cancelJob(run.job.id);
  const event = await run.done;
  t.match(event, { outcome: 'failed', error: { code: 'Cancelled' } });
  t.notMatch(event.error?.message, /taken again/);
  await f.engine.close();
  const catalog = Catalog.open(f.dataDir, KiB64);
  t.teardown(() => catalog.close());
  t.equal(new ModelCatalog(catalog).getBinding(d.id)!.lastDueAt, due.toISOString());
});
