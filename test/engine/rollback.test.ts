import t from 'tap';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { MiB, allocatedBytes, fillBlock, makeImage, pattern, readAt, sha256File, writeAt } from '../helpers/images';
import { BLOCK_HEADER_SIZE } from '../../src/store/format';
import { Catalog } from '../../src/catalog/catalog';
import { Engine } from '../../src/engine';

const BS = 64 * 1024;

t.test('rollback restores the snapshot bit-exactly and writes only the blocks that differ', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'a.raw'), 32 * BS);
  for (let i = 0; i < 32; i += 2) fillBlock(img, i, BS, `a${i}`);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const before = await sha256File(img);
  fillBlock(img, 3, BS, 'changed-3');
  fillBlock(img, 8, BS, 'changed-8');
  const job = await finished(engine, engine.startRollback(disk.id, snap.id));
  const r = job.result as { blocksWritten: number; holesPunched: number };
  t.equal(await sha256File(img), before);
  t.equal(r.blocksWritten, 1, 'block 8 rewritten from the store');
  t.equal(r.holesPunched, 1, 'block 3 was a hole and is punched again');
});

t.test('rollback restores a size that is not a multiple of the block size', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'odd.raw'), 5 * BS + 12345);
  fillBlock(img, 5, BS, 'tail', 12345);
  fillBlock(img, 0, BS, 'head');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  t.equal(snap.sizeBytes, 5 * BS + 12345);
  t.equal(snap.blockCount, 6);
  const before = await sha256File(img);
  makeImage(img, 9 * BS); // the image is replaced by a bigger, empty one
  const job = await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(statSync(img).size, 5 * BS + 12345);
  t.equal(await sha256File(img), before);
  t.match(job.result, { sizeBytes: 5 * BS + 12345, previousSizeBytes: 9 * BS }, 'the result names the size it found too');
});

t.test('a 64 GiB sparse image snapshots quickly and stays sparse after rollback', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'big.raw'), 64 * 1024 * MiB);
  for (const off of [0, 7 * 1024 * MiB, 40 * 1024 * MiB + 3 * MiB]) writeAt(img, off, Buffer.alloc(MiB, 0x5a));
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  t.equal(snap.logicalBytes, 3 * 4 * MiB, 'three non-ZERO 4 MiB blocks');
  t.equal(engine.storeStats().blocks, 2, 'the first two blocks have the same content; the third holds its data 3 MiB in');
  writeAt(img, 20 * 1024 * MiB, Buffer.alloc(MiB, 1));
  const before = allocatedBytes(img);
  const job = await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal((job.result as { holesPunched: number }).holesPunched, 1);
  t.ok(allocatedBytes(img) <= before, 'no block was filled in');
  t.ok(allocatedBytes(img) < 16 * MiB, 'still sparse');
  t.same(readAt(img, 40 * 1024 * MiB + 3 * MiB, 16), Buffer.alloc(16, 0x5a));
});

t.test('rollback then snapshot branches the chain from the rollback target', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'b.raw'), 4 * BS);
  fillBlock(img, 0, BS, 'one');
  const disk = await engine.addDisk({ path: img });
  const s1 = await snapshot(engine, disk.id, 'one');
  fillBlock(img, 1, BS, 'two');
  const s2 = await snapshot(engine, disk.id, 'two');
  await finished(engine, engine.startRollback(disk.id, 'one'));
  fillBlock(img, 2, BS, 'three');
  const s3 = await snapshot(engine, disk.id, 'three');
  t.equal(s3.parentId, s1.id);
  t.equal(engine.getSnapshot(s2.id).status, 'available', 'newer snapshots stay usable');
  const out = join(images, 'two.raw');
  await finished(engine, engine.startClone(s2.id, out));
  t.same(readAt(out, BS, BS), pattern('two', BS), 'branch "two" keeps its block 1');
  t.equal(readAt(out, 2 * BS, BS).every((b) => b === 0), true, 'branch "two" does not see block 2');
});

t.test('a corrupted block is detected on rollback and nothing is written from it', async (t) => {
  const { engine, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'c.raw'), 2 * BS);
  fillBlock(img, 0, BS, 'good');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const blocks = join(dataDir, 'blocks');
  const fan = readdirSync(blocks).find((d) => d !== 'tmp')!;
  const file = join(blocks, fan, readdirSync(join(blocks, fan))[0]!);
  writeAt(file, BLOCK_HEADER_SIZE + 100, Buffer.from([readAt(file, BLOCK_HEADER_SIZE + 100, 1)[0]! ^ 0xff]));
  fillBlock(img, 0, BS, 'changed');
  const changed = readAt(img, 0, BS);
  const done = await engine.waitJob(engine.startRollback(disk.id, snap.id).id);
  t.equal(done.state, 'failed');
  t.equal(done.error?.code, 'DigestMismatch');
  t.match(done.error?.message, fan);
  t.same(readAt(img, 0, BS), changed, 'the block was not overwritten with bad data');
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing was written, so nothing stays journaled');
  await snapshot(engine, disk.id);
});

t.test('an interrupted rollback is completed by a rerun', async (t) => {
  const { engine: first, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'd.raw'), 256 * BS);
  for (let i = 0; i < 256; i++) fillBlock(img, i, BS, `d${i}`);
  const disk = await first.addDisk({ path: img });
  const snap = await snapshot(first, disk.id);
  const want = await sha256File(img);
  for (let i = 0; i < 256; i++) fillBlock(img, i, BS, `x${i}`);
  // What a crash while the rollback wrote leaves: its journal, and part of the image written.
  await first.close();
  const catalog = Catalog.open(dataDir, BS);
  catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: snap.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000ae' } }));
  await catalog.close();
  for (let i = 0; i < 100; i++) fillBlock(img, i, BS, `d${i}`);
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  t.teardown(() => engine.close());
  t.ok(engine.getDisk(disk.id).pendingRollback, 'journaled');
  t.throws(() => engine.startSnapshot(disk.id), { code: 'RollbackIncomplete' });
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(engine.getDisk(disk.id).pendingRollback, null);
  t.equal(await sha256File(img), want);
});

t.test('a second job on a busy disk is refused with DiskBusy', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'e.raw'), 64 * BS);
  for (let i = 0; i < 64; i++) fillBlock(img, i, BS, `e${i}`);
  const disk = await engine.addDisk({ path: img });
  const job = engine.startSnapshot(disk.id);
  t.throws(() => engine.startSnapshot(disk.id), { code: 'DiskBusy' });
  t.throws(() => engine.startRollback(disk.id, job.snapshotId!), { code: /DiskBusy|SnapshotNotAvailable/ });
  await t.rejects(engine.deleteSnapshot(job.snapshotId!), { code: 'DiskBusy' });
  await finished(engine, job);
});

t.test('clone refuses to overwrite an existing file', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'f.raw'), 2 * BS);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const target = join(images, 'exists.raw');
  writeFileSync(target, 'keep me');
  t.throws(() => engine.startClone(snap.id, target), { code: 'FileExists' });
  t.equal(readAt(target, 0, 7).toString(), 'keep me');
});
