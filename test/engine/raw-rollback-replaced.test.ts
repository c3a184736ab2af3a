/**
 * A raw rollback writes its image in place, through the file the disk's path named when it
 * opened it. When another file is renamed over that path while it writes (`mv other img.raw`),
 * its writes go to a file no name leads to any more, and the file the VM opens was never rolled
 * back: the rollback fails (ImageReplaced) instead of recording success, and its journal stays so
 * that a rerun rolls back the file now at the path.
 */
import { copyFileSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';
import type { applyImage } from '../../src/native';

const BS = 64 * 1024;

/**
 * A raw disk snapshotted as `base` and then changed, and a rollback to `base` during which
 * another copy of the changed image is renamed over the disk's path: the test hook does it
 * just before the apply's first write, once the apply has opened the image.
 */
async function replacedDuringRollback(t: Test) {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'vm.raw'), 16 * BS);
  for (let i = 0; i < 16; i++) fillBlock(img, i, BS, `base-${i}`);
  const disk = await engine.addDisk({ path: img });
  const base = await snapshot(engine, disk.id, 'base');
  const wanted = readFileSync(img);
  for (let i = 0; i < 16; i += 2) fillBlock(img, i, BS, `changed-${i}`);
  const changed = await snapshot(engine, disk.id, 'changed');
  const other = join(images, 'vm.other');
  copyFileSync(img, other);
  const replacement = readFileSync(other);
  const native = require('../../src/native') as { applyImage: typeof applyImage };
  const real = native.applyImage;
  native.applyImage = (o) => real({
    ...o,
    beforeWrite: () => {
      o.beforeWrite?.();
      renameSync(other, img);
    },
  });
  t.teardown(() => { native.applyImage = real; });
  const job = await engine.waitJob(engine.startRollback(disk.id, base.id).id);
  native.applyImage = real;
  return { engine, img, disk, base, changed, job, wanted, replacement };
}

t.test('a raw rollback whose image is replaced while it writes fails with ImageReplaced, leaving the new file as it was', async (t) => {
  const { img, job, replacement } = await replacedDuringRollback(t);
  t.equal(job.state, 'failed', 'no success is recorded');
  t.equal(job.error?.code, 'ImageReplaced');
  t.match(job.error?.message, /vm\.raw was replaced .*not rolled back.*rerun it .*--abandon/, 'the message says what happened and the ways out');
  t.same(readFileSync(img), replacement, 'the file at the path holds what it held when it was renamed there');
});

t.test('after a replaced image the journal stays and the head is unchanged, so snapshots are refused', async (t) => {
  const { engine, disk, base, changed, job } = await replacedDuringRollback(t);
  const d = engine.getDisk(disk.id);
  t.match(d.pendingRollback, { snapshotId: base.id, jobId: job.id }, 'the rollback is journaled as unfinished');
  t.equal(d.headSnapshotId, changed.id, 'the head is still the snapshot taken before the rollback');
  t.throws(() => engine.startSnapshot(disk.id), { code: 'RollbackIncomplete' });
});

t.test('a rerun after a replaced image rolls back the file now at the path', async (t) => {
  const { engine, img, disk, base, wanted } = await replacedDuringRollback(t);
  const rerun = await finished(engine, engine.startRollback(disk.id, base.id));
  t.equal(rerun.state, 'succeeded');
  t.same(readFileSync(img), wanted, 'the file at the path holds the snapshot');
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'the journal is cleared');
});
