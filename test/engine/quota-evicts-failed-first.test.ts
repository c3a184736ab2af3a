/**
 * When an automatic snapshot commits over quota, failed automatic snapshots go before available
 * ones, however old: a failure holds nothing to restore, and keeping it while evicting a good
 * snapshot would trade data for an error message.
 */
import t from 'tap';
import { renameSync } from 'node:fs';
import { finished } from '../helpers/engine';
import { openSmallEngine, smallDisk } from '../helpers/model';

t.test('over quota, a newer failed automatic snapshot is deleted before an older available one', async (t) => {
  let tick = Date.parse('2027-03-01T00:00:00Z');
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 2 }, now: () => new Date(tick += 1000) });
  const d = await smallDisk(f, 'y', 2);
  const auto = (name: string, evicted?: (ids: string[]) => void) =>
    f.engine.startSnapshot('y', { type: 'auto', name, ...(evicted ? { quotaEvicted: evicted } : {}) });
  const a1 = (await finished(f.engine, auto('auto-1'))).snapshotId!;
  renameSync(d.path, `${d.path}.away`);
  const failed = await f.engine.waitJob(auto('auto-2').id);
  t.equal(failed.state, 'failed');
  renameSync(`${d.path}.away`, d.path);

  let reported: string[] | undefined;
  const a3 = (await finished(f.engine, auto('auto-3', (ids) => { reported = ids; }))).snapshotId!;
  t.same(f.engine.listSnapshots('y').map((s) => s.id), [a1, a3], 'the older available snapshot stays');
  t.same(reported, [failed.snapshotId], 'the failed one made the room');
});
