/**
 * A qcow2 rollback renames its new image over the disk's path only while the path still names
 * the image it locked. When another file is renamed over that path first, the writer refuses
 * (ImageReplaced), and the journal stays, as the path no longer names the file journaled: the
 * error says that the disk refuses snapshots until a rerun or an abandon.
 */
import { renameSync } from 'node:fs';
import t, { type Test } from 'tap';
import { BlocksnapError } from '../../src/errors';
import { finished } from '../helpers/engine';
import { compare, haveQemu } from '../helpers/qemu';
import { qcow2ChangedSinceBase } from '../helpers/qcow2-changed';
import type { writeQcow2 } from '../../src/native';

/**
 * A qcow2 disk snapshotted as `base` and then changed, and a rollback to `base` during which a
 * copy of the changed image is renamed over the disk's path. Test hook: the rename happens as the
 * writer starts, and the writer then fails as the real one does at its rename.
 */
async function replacedDuringRollback(t: Test) {
  const { engine, img, disk, base, wanted, other } = await qcow2ChangedSinceBase(t);
  const native = require('../../src/native') as { writeQcow2: typeof writeQcow2 };
  const real = native.writeQcow2;
  native.writeQcow2 = async () => {
    native.writeQcow2 = real;
    renameSync(other, img);
    throw new BlocksnapError('ImageReplaced', `${img} is no longer the image this rollback locked (moved, replaced, or a symlink swapped into its path); refusing to replace it`, { path: img });
  };
  t.teardown(() => { native.writeQcow2 = real; });
  const job = await engine.waitJob(engine.startRollback(disk.id, base.id).id);
  return { engine, img, disk, base, job, wanted };
}

t.test('qcow2', { skip: haveQemu() }, async (t) => {
  t.test('a qcow2 rollback whose image is replaced says the disk refuses snapshots and the ways out', async (t) => {
    const { job } = await replacedDuringRollback(t);
    t.equal(job.state, 'failed');
    t.equal(job.error?.code, 'ImageReplaced');
    t.match(job.error?.message, /refusing to replace it\. The rollback of disk vm to base did not replace the file now at its path, and the disk refuses snapshots until a rollback completes: rerun it .*, or `blocksnap rollback vm --abandon` to keep it as it is$/);
  });

  t.test('after a replaced qcow2 image the journal stays, so snapshots are refused', async (t) => {
    const { engine, disk, base, job } = await replacedDuringRollback(t);
    t.match(engine.getDisk(disk.id).pendingRollback, { snapshotId: base.id, jobId: job.id });
    t.throws(() => engine.startSnapshot(disk.id), { code: 'RollbackIncomplete' });
  });

  t.test('a rerun after a replaced qcow2 image rolls back the file now at the path', async (t) => {
    const { engine, img, disk, base, wanted } = await replacedDuringRollback(t);
    t.equal((await finished(engine, engine.startRollback(disk.id, base.id))).state, 'succeeded');
    t.equal(compare(img, 'qcow2', wanted, 'raw').status, 0, 'the image holds the snapshot');
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'the journal is cleared');
  });
});
