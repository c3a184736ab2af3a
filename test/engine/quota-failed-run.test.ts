/**
 * A policy run whose snapshot fails (here: the image was moved away) must not cost the disk an
 * available snapshot. The quota used to make room when the snapshot started, so two failed runs
 * on a full disk deleted both good snapshots and left only the two failures.
 */
import t from 'tap';
import { renameSync } from 'node:fs';
import { openSmallEngine, smallDisk } from '../helpers/model';

t.test('failed runs on a disk at its automatic quota delete no available snapshot', async (t) => {
  let tick = Date.parse('2027-03-01T00:00:00Z');
  // Distinct creation times, so that "oldest" is not decided by a tie between random ids.
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 2 }, now: () => new Date(tick += 1000) });
  const d = await smallDisk(f, 'y', 2);
  f.engine.policies.create({ name: 'yq', hours: [1], enabled: false });
  f.engine.policies.bind('yq', ['y']);
  const good = [];
  for (let i = 0; i < 2; i++) good.push((await f.engine.policies.run('yq')).disks[0]!.snapshotId!);

  renameSync(d.path, `${d.path}.elsewhere`);
  for (let i = 0; i < 2; i++) {
    const [e] = (await f.engine.policies.run('yq')).disks;
    t.match(e, { outcome: 'failed', error: { code: 'ImageNotFound' } }, `failed run ${i + 1}`);
    t.same(e!.expired, [], 'and it deleted nothing');
  }

  const snaps = f.engine.listSnapshots('y');
  t.same(snaps.filter((s) => s.status === 'available').map((s) => s.id), good, 'both good snapshots are still there');
  t.equal(snaps.filter((s) => s.status === 'error').length, 2, 'beside the two failures');
  t.same(f.engine.policies.get('yq').history.map((e) => e.expired), [[], [], [], []], 'no run of the history deleted anything');
});
