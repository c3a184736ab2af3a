import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, readAt, writeAt } from '../helpers/images';
import { BLOCK_HEADER_SIZE } from '../../src/store/format';
import { scanImage } from '../../src/native';
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
