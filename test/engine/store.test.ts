import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, readAt, writeAt } from '../helpers/images';
import { BLOCK_HEADER_SIZE } from '../../src/store/format';
import { scanImage, type verifyBlocks, type VerifyOptions } from '../../src/native';
import type { GcResult, VerifyResult } from '../../src/engine/types';

const BS = 64 * 1024;

function blockFiles(dataDir: string): string[] {
  const root = join(dataDir, 'blocks');
  return readdirSync(root).filter((d) => d !== 'tmp').flatMap((d) => readdirSync(join(root, d)).map((f) => join(root, d, f)));
}

t.test('two identical disks share every block', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  for (const name of ['a', 'b']) {
    const img = makeImage(join(images, `${name}.raw`), 8 * BS);
    for (let i = 0; i < 8; i++) fillBlock(img, i, BS, `same${i}`);
    const disk = await engine.addDisk({ path: img });
    await snapshot(engine, disk.id);
  }
  t.equal(engine.storeStats().blocks, 8);
  const chains = engine.listChains();
  t.same(chains.map((c) => c.storedBlocks), [8, 8]);
  t.equal(engine.listSnapshots()[1]!.newBytes, 0, 'the second disk added nothing');
});

t.test('gc reclaims block files no snapshot references and keeps the rest', async (t) => {
  const { engine, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'g.raw'), 4 * BS);
  for (let i = 0; i < 4; i++) fillBlock(img, i, BS, `g${i}`);
  const disk = await engine.addDisk({ path: img });
  await snapshot(engine, disk.id);
  // Blocks written by a scan that never committed, as a crash between scan and commit leaves them.
  const orphan = makeImage(join(images, 'orphan.raw'), 3 * BS);
  for (let i = 0; i < 3; i++) fillBlock(orphan, i, BS, `orphan${i}`);
  await scanImage({ imagePath: orphan, storeDir: join(dataDir, 'blocks'), blockSize: BS });
  t.equal(blockFiles(dataDir).length, 7);
  const job = await finished(engine, engine.startGc());
  const r = job.result as GcResult;
  t.equal(r.removedBlocks, 3);
  t.equal(r.orphanBlocks, 3, 'no delete had freed them');
  t.equal(r.keptBlocks, 4);
  t.equal(blockFiles(dataDir).length, 4);
});

t.test('store verify names a damaged block and the snapshots that reference it', async (t) => {
  const { engine, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'v.raw'), 2 * BS);
  fillBlock(img, 0, BS, 'v0');
  fillBlock(img, 1, BS, 'v1');
  const disk = await engine.addDisk({ path: img });
  const s1 = await snapshot(engine, disk.id);
  const s2 = await snapshot(engine, disk.id);
  const file = blockFiles(dataDir)[0]!;
  writeAt(file, BLOCK_HEADER_SIZE + 7, Buffer.from([readAt(file, BLOCK_HEADER_SIZE + 7, 1)[0]! ^ 1]));
  const job = await finished(engine, engine.startVerify());
  const r = job.result as VerifyResult;
  t.equal(r.checkedBlocks, 2);
  t.equal(r.problems.length, 1);
  t.equal(r.problems[0]!.reason, 'digest-mismatch');
  t.same(r.problems[0]!.snapshots.sort(), [s1.id, s2.id].sort());
});

t.test('removing a disk with snapshots needs consent and then frees its blocks', async (t) => {
  const { engine, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'r.raw'), 4 * BS);
  for (let i = 0; i < 4; i++) fillBlock(img, i, BS, `r${i}`);
  const disk = await engine.addDisk({ path: img });
  await snapshot(engine, disk.id);
  fillBlock(img, 0, BS, 'r-changed');
  await snapshot(engine, disk.id);
  await t.rejects(engine.removeDisk(disk.id), { code: 'DiskHasSnapshots' });
  await engine.removeDisk(disk.id, { deleteSnapshots: true });
  await engine.idle();
  t.equal(engine.storeStats().blocks, 0);
  t.equal(blockFiles(dataDir).length, 0);
  t.throws(() => engine.getDisk(disk.id), { code: 'DiskNotFound' });
});

/** A disk of 4 blocks snapshotted three times, every block changed in between: each snapshot holds 4 blocks of its own. */
async function threeGenerations(t: Parameters<typeof openEngine>[0]) {
  const f = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(f.images, 'gen.raw'), 4 * BS);
  const disk = await f.engine.addDisk({ path: img });
  const snaps = [];
  for (const gen of ['one', 'two', 'three']) {
    for (let i = 0; i < 4; i++) fillBlock(img, i, BS, `${gen}${i}`);
    snaps.push(await snapshot(f.engine, disk.id, gen));
  }
  return { ...f, snaps };
}

t.test('blocks freed while a sweep is under way are swept when it ends', async (t) => {
  const { engine, dataDir, snaps } = await threeGenerations(t);
  await engine.deleteSnapshot(snaps[0]!.id);
  // The first delete's sweep is still unlinking: this one's blocks cannot join it.
  await engine.deleteSnapshot(snaps[1]!.id);
  await engine.idle();
  t.equal(engine.storeStats().pendingFreeBlocks, 0, 'nothing left on the free list');
  t.equal(blockFiles(dataDir).length, 4, 'only the last snapshot\'s blocks are on disk');
});

t.test('a snapshot deleted while gc lists the store has its blocks swept, not orphaned', async (t) => {
  const { engine, dataDir, snaps } = await threeGenerations(t);
  // Test hook: the delete lands after gc has listed every block file (all referenced then).
  const store = (engine as unknown as { store: { entries(): AsyncGenerator<unknown> } }).store;
  const entries = store.entries.bind(store);
  store.entries = async function* () {
    yield* entries();
    await engine.deleteSnapshot(snaps[0]!.id);
  };
  const gc = (await finished(engine, engine.startGc())).result as GcResult;
  t.equal(gc.removedBlocks, 0, 'gc saw every block referenced');
  await engine.idle();
  t.equal(engine.storeStats().pendingFreeBlocks, 0, 'nothing left on the free list');
  t.equal(blockFiles(dataDir).length, 8, 'the deleted snapshot\'s blocks were unlinked');
});

t.test('store verify does not report a block that was swept and stored again while it ran', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const disk = async (name: string, seed: string) => {
    const img = makeImage(join(images, `${name}.raw`), BS);
    fillBlock(img, 0, BS, seed);
    return (await engine.addDisk({ path: img, name })).id;
  };
  const a = await disk('a', 'shared');
  await disk('b', 'other');
  const c = await disk('c', 'shared');
  const gone = await snapshot(engine, a);
  await snapshot(engine, 'b');
  // Test hook around the native verify: the block is deleted and swept after verify took its
  // list and before it reads the block, then stored again and referenced before verify ends.
  const native = require('../../src/native') as { verifyBlocks: typeof verifyBlocks };
  const real = native.verifyBlocks;
  native.verifyBlocks = async (o: VerifyOptions) => {
    native.verifyBlocks = real;
    await engine.deleteSnapshot(gone.id);
    await engine.idle();
    const r = await real(o);
    await snapshot(engine, c);
    return r;
  };
  t.teardown(() => { native.verifyBlocks = real; });
  const r = (await finished(engine, engine.startVerify())).result as VerifyResult;
  t.same(r.problems, [], 'no problem: every referenced block is whole');
});
