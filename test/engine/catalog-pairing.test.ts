import t, { type Test } from 'tap';
import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { Engine } from '../../src/engine';
import type { GcResult } from '../../src/engine/types';
import { CATALOG_FILE, META_STORE_ID } from '../../src/catalog/schema';
import { engineWithSnapshot, finished, refusal, secondEngine, snapshot, type Fixture } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

// A catalog that is not the one that goes with the block store must not have gc or the sweep
// delete blocks: a catalog restored from a backup lacks every block committed since, another data
// dir's lacks all of them.

const BS = 64 * 1024;

/** Every block file under the store (the stamp and temp files aside). */
function blockFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'blocks');
  return readdirSync(dir).filter((f) => /^[0-9a-f]{3}$/.test(f)).flatMap((f) => readdirSync(join(dir, f))).sort();
}

function reopen(t: Test, f: Fixture): Promise<Engine> {
  return Engine.open({ dataDir: f.dataDir, imageRoots: [f.images] }).then((e) => { t.teardown(() => e.close()); return e; });
}

/** A data dir whose catalog is a copy taken after the first snapshot, and whose store has a second snapshot's blocks too. */
async function olderCatalog(t: Test): Promise<Fixture & { img: string; newer: string[]; engine: Engine }> {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 8, filled: 4, disk: 'vm', snapshot: 'first' });
  await f.engine.close();
  const copy = join(f.dataDir, '..', 'catalog-copy.mdb');
  copyFileSync(join(f.dataDir, CATALOG_FILE), copy);
  const before = blockFiles(f.dataDir);
  const e = await reopen(t, f);
  fillBlock(f.img, 5, BS, 'vm-5-later');
  fillBlock(f.img, 6, BS, 'vm-6-later');
  await snapshot(e, 'vm', 'second');
  await e.close();
  const newer = blockFiles(f.dataDir).filter((b) => !before.includes(b));
  t.equal(newer.length, 2, 'the second snapshot stored two blocks');
  copyFileSync(copy, join(f.dataDir, CATALOG_FILE));
  return { ...f, newer, engine: await reopen(t, f) };
}

t.test('store gc is refused with CatalogMismatch on a catalog older than the store, and keeps the blocks committed since', async (t) => {
  const f = await olderCatalog(t);
  const r = await refusal(async () => f.engine.waitJob(f.engine.startGc().id));
  t.equal(r.code, 'CatalogMismatch');
  t.match(r.message, /older than the block store .* store accept-catalog/);
  for (const b of f.newer) t.ok(blockFiles(f.dataDir).includes(b), `block ${b.slice(0, 8)} of the later snapshot is still there`);
});

t.test('store stats says why deletions are held on a catalog older than the store', async (t) => {
  const f = await olderCatalog(t);
  t.equal(f.engine.storeStats().catalogHold?.reason, 'older');
});

t.test('the sweep does not unlink blocks an older catalog\'s deletion frees', async (t) => {
  const f = await olderCatalog(t);
  const all = blockFiles(f.dataDir);
  await f.engine.deleteSnapshot('first'); // the lost later snapshot still needed its unchanged blocks
  await f.engine.idle();
  t.same(blockFiles(f.dataDir), all, 'every block file is still there');
  t.ok(f.engine.storeStats().pendingFreeBlocks > 0, 'the freed blocks wait on the free list');
});

t.test('accepting an older catalog lets store gc remove the blocks only the newer one referenced', async (t) => {
  const f = await olderCatalog(t);
  const accepted = f.engine.acceptCatalog();
  t.equal(accepted.accepted, true);
  t.equal(accepted.previousHold, 'older');
  const gc = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(gc.removedBlocks, 2, 'the later snapshot\'s two blocks go');
  for (const b of f.newer) t.notOk(blockFiles(f.dataDir).includes(b));
  await f.engine.close();
  const again = await reopen(t, f);
  t.equal(again.storeStats().catalogHold, null, 'and the next start finds the catalog the store\'s');
});

t.test('store gc is refused on another data dir\'s catalog, and keeps this store\'s blocks', async (t) => {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'a1' });
  await a.engine.close();
  const b = await secondEngine(t, a, BS);
  const img = makeImage(join(b.images, 'b.raw'), 4 * BS);
  fillBlock(img, 0, BS, 'b-0');
  fillBlock(img, 1, BS, 'b-1');
  await b.engine.addDisk({ path: img, name: 'b' });
  await snapshot(b.engine, 'b');
  await b.engine.close();
  const blocks = blockFiles(b.dataDir);
  copyFileSync(join(a.dataDir, CATALOG_FILE), join(b.dataDir, CATALOG_FILE));
  const e = await reopen(t, b);
  t.equal(e.storeStats().catalogHold?.reason, 'foreign');
  t.equal((await refusal(async () => e.waitJob(e.startGc().id))).code, 'CatalogMismatch');
  t.same(blockFiles(b.dataDir), blocks, 'b\'s blocks are all there');
});

t.test('a stamp one generation behind the catalog (a stop between the two writes) holds nothing back', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 's1' });
  await f.engine.close();
  const stampPath = join(f.dataDir, 'catalog-stamp');
  const stamp = JSON.parse(readFileSync(stampPath, 'utf8')) as { storeId: string; generation: number };
  writeFileSync(stampPath, JSON.stringify({ ...stamp, generation: stamp.generation - 1 }));
  const e = await reopen(t, f);
  t.equal(e.storeStats().catalogHold, null);
  t.same(JSON.parse(readFileSync(stampPath, 'utf8')), stamp, 'the stamp is brought up to the catalog');
});

t.test('a data dir from before stamps gets one at its start, and gc goes on', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 's1' });
  await f.engine.close();
  rmSync(join(f.dataDir, 'catalog-stamp'));
  const raw = open({ path: join(f.dataDir, CATALOG_FILE), compression: false });
  const meta = raw.openDB<unknown, string>({ name: 'meta' });
  raw.transactionSync(() => meta.removeSync(META_STORE_ID));
  t.equal(meta.get(META_STORE_ID), undefined, 'the catalog is as an older version wrote it');
  await raw.close();
  const e = await reopen(t, f);
  t.equal(e.storeStats().catalogHold, null);
  await finished(e, e.startGc());
  t.match(readFileSync(join(f.dataDir, 'catalog-stamp'), 'utf8'), /"storeId":"[0-9a-f]{32}"/);
});
