/**
 * A policy run whose snapshot is cancelled (job cancel, or the daemon's orderly stop, which
 * cancels every job) must not cost the disk an available snapshot: the quota makes room only
 * for a snapshot that became available.
 */
import t from 'tap';
import { openSmallEngine, smallDisk } from '../helpers/model';

t.test('a cancelled run on a disk at its automatic quota deletes no available snapshot', async (t) => {
  let tick = Date.parse('2027-03-01T00:00:00Z');
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 2 }, now: () => new Date(tick += 1000) });
  await smallDisk(f, 'y', 64);
  f.engine.policies.create({ name: 'yq', hours: [1], enabled: false });
  f.engine.policies.bind('yq', ['y']);
  const good = [];
  for (let i = 0; i < 2; i++) good.push((await f.engine.policies.run('yq')).disks[0]!.snapshotId!);

  const run = f.engine.policies.run('yq');
  const job = f.engine.listJobs().find((j) => j.kind === 'snapshot' && j.state === 'running');
  t.ok(job, 'the run\'s snapshot job is running');
  f.engine.cancelJob(job!.id);
  const [e] = (await run).disks;
  t.match(e, { outcome: 'failed', error: { code: 'Cancelled' } });
  t.same(e!.expired, [], 'the run deleted nothing');
  t.same(f.engine.listSnapshots('y').map((s) => s.id), good, 'both good snapshots are still there, and the cancelled one is gone');
});
