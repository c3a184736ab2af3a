/**
 * A failed manual snapshot holds no blocks: counted against the manual
 * quota, a cron taking snapshots of a moved image would fill the quota with failures, and the disk
 * would go on refusing manual snapshots once the image is back.
 */
import t from 'tap';
import { renameSync } from 'node:fs';
import { snapshot } from '../helpers/engine';
import { openSmallEngine, smallDisk } from '../helpers/model';
import { FAILED_MANUAL_KEPT } from '../../src/engine/quotas';

t.test('failed manual snapshots do not count against the manual quota', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { manual: 2, auto: 2 } });
  const d = await smallDisk(f, 'vm', 2);
  await snapshot(f.engine, d.id, 'good');
  renameSync(d.path, `${d.path}.moved`);
  for (let i = 0; i < 3; i++) {
    const failed = await f.engine.waitJob(f.engine.startSnapshot(d.id, { name: `while-moved-${i}` }).id);
    t.equal(failed.error?.code, 'ImageNotFound', `snapshot ${i} fails while the image is away`);
  }
  renameSync(`${d.path}.moved`, d.path);
  t.equal(f.engine.listSnapshots(d.id).filter((s) => s.status === 'error').length, 3, 'the failures are kept as error records');
  await snapshot(f.engine, d.id, 'back');
  t.pass('the second good one fits the quota of two');
  t.throws(() => f.engine.startSnapshot(d.id, { name: 'third' }), { code: 'SnapshotQuotaExceeded' }, 'a third good one does not');
});

t.test('a disk keeps its newest failed manual snapshots only', async (t) => {
  // A clock a second further at each reading: two failures never share a creation time.
  let tick = Date.parse('2026-01-01T00:00:00Z');
  const f = await openSmallEngine(t, { now: () => new Date((tick += 1000)) });
  const d = await smallDisk(f, 'vm', 1);
  renameSync(d.path, `${d.path}.moved`);
  for (let i = 0; i < FAILED_MANUAL_KEPT + 3; i++) {
    await f.engine.waitJob(f.engine.startSnapshot(d.id, { name: `while-moved-${i}` }).id);
  }
  const failed = f.engine.listSnapshots(d.id).filter((s) => s.status === 'error').map((s) => s.name);
  t.same(failed, Array.from({ length: FAILED_MANUAL_KEPT }, (_, i) => `while-moved-${i + 3}`), 'the oldest three failures are gone, the newest kept');
});
