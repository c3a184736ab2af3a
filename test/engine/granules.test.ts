/**
 * Granule files (<data-dir>/granules, docs/design.md "Copy-on-write disks") through the engine: a
 * snapshot leaves the granule file of every block it stores, a copy-on-write disk's first write
 * into a base block without one writes it, and the file goes when the block does.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../../src/engine';
import { granulePath, granuleTmpDir } from '../../src/store/granule-format';
import { blockPath } from '../../src/store/format';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';

const BS = 256 * 1024;

/** A snapshot of a 4-block disk with data in every block, and the paths of block 2's files. */
async function based(t: Parameters<typeof openEngine>[0]) {
  const f = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(f.images, 'a.raw'), 4 * BS);
  const block2 = [0, 1, 2, 3].map((i) => fillBlock(img, i, BS, `g-${i}`))[2]!;
  const disk = await f.engine.addDisk({ path: img, name: 'a' });
  await snapshot(f.engine, disk.id, 'base');
  const hex = createHash('sha256').update(block2).digest('hex');
  return { ...f, img, disk, block: blockPath(join(f.dataDir, 'blocks'), hex), granules: granulePath(join(f.dataDir, 'granules'), hex) };
}

/** Writes 512 bytes into block 2 of a fresh COW clone through its writable export: a copy-up of its 4 KiB granule. */
async function writeIntoClone(engine: Engine, name: string): Promise<void> {
  await engine.cloneCow('base', name);
  engine.exports.setEndpoint('/nonexistent/nbd.sock');
  const e = await engine.exports.startDisk(name);
  await engine.exports.lookup(e.name)!.backend.write!(2 * BS + 8192 + 512, pattern('w', 512), true);
  await engine.exports.stop(e.name);
}

/** writeIntoClone, then drops the clone. */
async function writeThroughClone(engine: Engine, name: string): Promise<void> {
  await writeIntoClone(engine, name);
  await engine.removeDisk(name, { discardWrites: true });
}

t.test('a snapshot leaves the granule file of each block it stores; deleting the last snapshot sweeps both files', async (t) => {
  const { engine, disk, block, granules } = await based(t);
  t.ok(existsSync(granules), 'the granule file of the stored block');
  await engine.removeDisk(disk.id, { deleteSnapshots: true });
  await engine.idle();
  t.notOk(existsSync(block), 'the block was swept');
  t.notOk(existsSync(granules), 'and its granule file with it');
});

t.test('a copy-up into a base block without a granule file writes it', async (t) => {
  const { engine, granules } = await based(t);
  rmSync(granules);
  await writeThroughClone(engine, 'c');
  t.ok(existsSync(granules));
});

t.test('a snapshot of a copy-on-write disk leaves the granule file of each block it stores', async (t) => {
  const { engine, img, dataDir } = await based(t);
  await writeIntoClone(engine, 'c');
  await snapshot(engine, 'c', 'after');
  const changed = Buffer.from(readFileSync(img).subarray(2 * BS, 3 * BS));
  pattern('w', 512).copy(changed, 8192 + 512);
  const hex = createHash('sha256').update(changed).digest('hex');
  t.ok(existsSync(blockPath(join(dataDir, 'blocks'), hex)), 'the changed block was stored');
  t.ok(existsSync(granulePath(join(dataDir, 'granules'), hex)), 'with its granule file');
});

t.test('gc removes the granule file of an orphan block with the block', async (t) => {
  const { engine, disk, block, granules } = await based(t);
  await writeThroughClone(engine, 'c');
  // The block left unreferenced and unswept, as a crash after the snapshot's delete leaves it.
  await engine.removeDisk(disk.id, { deleteSnapshots: true });
  await engine.idle();
  t.notOk(existsSync(block));
  mkdirSync(join(block, '..'), { recursive: true });
  writeFileSync(block, 'orphan');
  mkdirSync(join(granules, '..'), { recursive: true });
  writeFileSync(granules, 'orphan');
  await finished(engine, engine.startGc());
  t.notOk(existsSync(block));
  t.notOk(existsSync(granules));
});

t.test('gc removes granule files left half written', async (t) => {
  const { engine, dataDir } = await based(t);
  const tmp = granuleTmpDir(join(dataDir, 'granules'));
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, 'leftover'), 'x');
  await finished(engine, engine.startGc());
  t.notOk(existsSync(join(tmp, 'leftover')));
});
