/**
 * `disk relocate` points a disk at its image's new path and keeps its snapshots: a moved image
 * is refused by every job until then, and re-registering it would cost the whole chain. The new
 * path passes what `disk add` checks, and a disk whose state is tied to its file (a running job,
 * an unfinished rollback) is not relocated.
 */
import { copyFileSync, linkSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { Engine } from '../../src/engine';
import { engineWithSnapshot, finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, readAt } from '../helpers/images';
import { runningRollback } from '../helpers/held-rollback';
import { qemuImg } from '../helpers/qemu';

const BS = 64 * 1024;

function moveAndLink(img: string): string {
  const moved = img.replace(/\.raw$/, '-moved.raw');
  renameSync(img, moved);
  symlinkSync(moved, img);
  return moved;
}

t.test('a moved image is refused with the relocate command, and relocated it keeps its snapshots', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 'one' });
  const moved = moveAndLink(f.img);
  t.throws(() => f.engine.startRollback('vm', 'one'), {
    code: 'PathNotAllowed',
    message: `${f.img} now resolves to ${moved}, another file. If the disk's image is now ${moved} (a storage move, an external snapshot, ` +
      `a retargeted link), point the disk at it: blocksnap disk relocate vm ${f.img} (its snapshots stay); otherwise put the image back at ${f.img}`,
  });

  const d = f.engine.relocateDisk('vm', moved);
  t.match(d, { path: moved, givenPath: null, headSnapshotId: f.snap.id, snapshotCount: 1 });
  const two = await snapshot(f.engine, 'vm', 'two');
  t.match(two, { parentId: f.snap.id, changedBlocks: 0 }, 'the next snapshot is an increment over the head');
});

t.test('relocate records the size of the image it points the disk at', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 'one' });
  const bigger = makeImage(join(f.images, 'bigger.raw'), 6 * BS);
  t.equal(f.engine.relocateDisk('vm', bigger).sizeBytes, 6 * BS);
});

t.test('an image moved away without a link is refused with the relocate command', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'vm', snapshot: 'one' });
  renameSync(f.img, join(f.images, 'elsewhere.raw'));
  t.throws(() => f.engine.startRollback('vm', 'one'), {
    code: 'ImageNotFound', message: /does not exist; if disk vm's image was moved, point the disk at it \(blocksnap disk relocate vm PATH; its snapshots stay\)$/,
  });
});

t.test('a relocated disk rolls back into its new image', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 'one' });
  const before = readAt(f.img, 0, 2 * BS);
  const moved = moveAndLink(f.img);
  f.engine.relocateDisk('vm', moved);
  fillBlock(moved, 0, BS, 'changed');
  await finished(f.engine, f.engine.startRollback('vm', 'one'));
  t.same(readAt(moved, 0, 2 * BS), before);
});

t.test('relocate refuses an image of another format than the disk', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'vm', snapshot: 'one' });
  const q = join(f.images, 'vm.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', q, String(4 * BS));
  t.throws(() => f.engine.relocateDisk('vm', q), {
    code: 'NotAnImage', message: /is a qcow2 image, and disk vm is raw: relocate keeps a disk's format/, details: { found: 'qcow2' },
  });
  t.equal(f.engine.getDisk('vm').path, f.img, 'the disk is unchanged');
});

t.test('relocate refuses another disk\'s image, also by a hard link', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'vm', snapshot: 'one' });
  const other = makeImage(join(f.images, 'other.raw'), 4 * BS);
  await f.engine.addDisk({ path: other, name: 'other' });
  t.throws(() => f.engine.relocateDisk('vm', other), { code: 'DiskAlreadyRegistered', message: /registered as disk other$/ });
  const link = join(f.images, 'other-link.raw');
  linkSync(other, link);
  t.throws(() => f.engine.relocateDisk('vm', link), { code: 'DiskAlreadyRegistered', message: /registered as disk other \(.* is the same file\)$/ });
});

t.test('relocate is refused while a job runs on the disk', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'vm', snapshot: 'one' });
  const moved = moveAndLink(f.img);
  f.engine.relocateDisk('vm', moved);
  const job = f.engine.startSnapshot('vm');
  t.throws(() => f.engine.relocateDisk('vm', f.img), { code: 'DiskBusy' });
  await finished(f.engine, job);
});

t.test('relocate is refused while a rollback of the disk is unfinished', async (t) => {
  const dir = t.testdir({ images: {} });
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  let engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  const img = makeImage(join(images, 'vm.raw'), 4 * BS);
  const disk = await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, 'vm', 'one');
  await engine.close();
  const catalog = Catalog.open(dataDir, BS);
  catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: snap.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000ad' } }));
  await catalog.close();
  engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  t.teardown(() => engine.close());
  t.throws(() => engine.relocateDisk('vm', moveAndLink(img)), {
    code: 'RollbackIncomplete',
    message: /^a rollback of disk vm to .* did not finish, and relocating it is refused until a rollback completes or is abandoned; run the rollback again/,
  });
});

t.test('relocate refuses a copy-on-write disk, which has no image', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'vm', snapshot: 'one' });
  await f.engine.cloneCow('one', 'c');
  t.throws(() => f.engine.relocateDisk('c', f.img), { code: 'InvalidArgument', message: /copy-on-write disk/ });
});

t.test('relocate is refused as busy, not unfinished, while a rollback of the disk runs', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'vm', snapshot: 'one' });
  const { rollback, release } = await runningRollback(t, f.engine, f.img, 'vm', 'one', BS);
  const copy = join(f.images, 'vm-copy.raw');
  copyFileSync(f.img, copy);
  t.throws(() => f.engine.relocateDisk('vm', copy), { code: 'DiskBusy', message: new RegExp(`is busy with job ${rollback.id}$`) });
  release();
  await finished(f.engine, rollback);
});
