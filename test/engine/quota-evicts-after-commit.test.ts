/**
 * The automatic quota makes room once the new snapshot is available, not when it starts: while it
 * is being created the disk holds one automatic snapshot more than its quota, and the oldest is
 * deleted only if the new one commits.
 */
import t from 'tap';
import { finished } from '../helpers/engine';
import { openSmallEngine, smallDisk } from '../helpers/model';

t.test('the oldest automatic snapshot stays while the new one is being created and goes once it is available', async (t) => {
  let tick = Date.parse('2027-03-01T00:00:00Z');
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 2 }, now: () => new Date(tick += 1000) });
  await smallDisk(f, 'y', 2);
  const auto = (name: string, evicted?: (ids: string[]) => void) =>
    f.engine.startSnapshot('y', { type: 'auto', name, ...(evicted ? { quotaEvicted: evicted } : {}) });
  const a1 = (await finished(f.engine, auto('auto-1'))).snapshotId!;
  const a2 = (await finished(f.engine, auto('auto-2'))).snapshotId!;

  let reported: string[] | undefined;
  const job = auto('auto-3', (ids) => { reported = ids; });
  t.same(f.engine.listSnapshots('y').map((s) => [s.id, s.status]), [[a1, 'available'], [a2, 'available'], [job.snapshotId, 'creating']],
    'started: three automatic snapshots on a quota of two, none deleted yet');
  await finished(f.engine, job);
  t.same(f.engine.listSnapshots('y').map((s) => s.id), [a2, job.snapshotId], 'available: the oldest went');
  t.same(reported, [a1], 'and the snapshot\'s caller was told which');
});
