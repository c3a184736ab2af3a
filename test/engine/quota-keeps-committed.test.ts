/**
 * The automatic quota makes room by deleting older snapshots, never the one just committed: when
 * every older one became undeletable while the new one was taken, the disk stays over its quota
 * until a later commit can make the room.
 */
import t from 'tap';
import { finished } from '../helpers/engine';
import { openSmallEngine, smallDisk } from '../helpers/model';

t.test('a snapshot committed while every older automatic one became undeletable is kept, over quota', async (t) => {
  let tick = Date.parse('2027-03-01T00:00:00Z');
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 1 }, now: () => new Date(tick += 1000) });
  await smallDisk(f, 'y', 2);
  const a1 = (await finished(f.engine, f.engine.startSnapshot('y', { type: 'auto', name: 'auto-1' }))).snapshotId!;

  let evicted: string[] | undefined;
  const job = f.engine.startSnapshot('y', { type: 'auto', name: 'auto-2', quotaEvicted: (ids) => { evicted = ids; } });
  // Started while auto-1 could still go; exported (and so undeletable) before auto-2 commits.
  f.engine.exports.setEndpoint('/run/test/nbd.sock');
  f.engine.exports.start(a1, { name: 'y-1' });
  await finished(f.engine, job);

  t.same(f.engine.listSnapshots('y').map((s) => [s.id, s.status]), [[a1, 'available'], [job.snapshotId, 'available']]);
  t.same(evicted, [], 'nothing could go');
});
