/**
 * Damaged blocks at the engine's level (block-repair.ts): an import that carries a block listed as
 * damaged writes it again; a mark whose block reads intact is forgotten instead of failing a
 * snapshot; a damaged block the sweep unlinks is forgotten with it; a reader's report lands in
 * the catalog before its job's end is seen.
 */
import t from 'tap';
import { copyFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { Engine } from '../../src/engine';
import { finished, openEngine, secondEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, readAt, writeAt } from '../helpers/images';
import { BLOCK_HEADER_SIZE, blockPath } from '../../src/store/format';
import type { DamagedBlocks } from '../../src/catalog/damaged-blocks';
import type { Catalog } from '../../src/catalog/catalog';
import type { VerifyResult } from '../../src/engine/types';

const BS = 64 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function flip(dataDir: string, hex: string, at = BLOCK_HEADER_SIZE + 11): void {
  const file = blockPath(join(dataDir, 'blocks'), hex);
  writeAt(file, at, Buffer.from([readAt(file, at, 1)[0]! ^ 1]));
}

function payloadSha(dataDir: string, hex: string): string {
  return sha(readFileSync(blockPath(join(dataDir, 'blocks'), hex)).subarray(BLOCK_HEADER_SIZE));
}

/** The engine's list of damaged blocks and its catalog (internals, for the test's eyes only). */
function internals(engine: Engine): { damaged: DamagedBlocks; catalog: Catalog } {
  const e = engine as unknown as { repair: { damaged: DamagedBlocks }; catalog: Catalog };
  return { damaged: e.repair.damaged, catalog: e.catalog };
}

async function verify(engine: Engine): Promise<VerifyResult> {
  return (await finished(engine, engine.startVerify())).result as VerifyResult;
}

t.test('a stream import that carries a block listed as damaged writes it again', async (t) => {
  const a = await openEngine(t, { blockSize: BS });
  const imgA = makeImage(join(a.images, 'a.raw'), 2 * BS);
  const p = fillBlock(imgA, 0, BS, 'shared');
  fillBlock(imgA, 1, BS, 'only-a');
  const diskA = await a.engine.addDisk({ path: imgA });
  const sA = await snapshot(a.engine, diskA.id);
  const stream = join(a.images, 's.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport(sA.id, stream));

  // A second host holds the same block, damaged.
  const hostB = await secondEngine(t, a, BS);
  const b = hostB.engine;
  const dirB = dirname(hostB.dataDir);
  const imgB = makeImage(join(dirB, 'images', 'b.raw'), BS);
  writeAt(imgB, 0, p);
  const diskB = await b.addDisk({ path: imgB });
  await snapshot(b, diskB.id);
  const hex = sha(p);
  flip(join(dirB, 'data'), hex);
  t.match((await verify(b)).problems, [{ digest: hex, reason: 'digest-mismatch' }]);
  t.ok(internals(b).damaged.has(Buffer.from(hex, 'hex')), 'listed as damaged');

  // Overwrite the image so that no snapshot of disk b could repair it: only the import can.
  writeAt(imgB, 0, Buffer.alloc(BS, 7));
  copyFileSync(stream, join(dirB, 'images', 's.bsnap'));
  await finished(b, b.offsite.streams.startImport(join(dirB, 'images', 's.bsnap'), diskB.id));
  t.equal(payloadSha(join(dirB, 'data'), hex), hex, 'the import wrote the block again');
  t.notOk(internals(b).damaged.has(Buffer.from(hex, 'hex')), 'and its commit forgot the mark');
  const after = await verify(b);
  t.same(after.problems, []);
  t.equal(after.awaitingRepair, 0);
});

t.test('a mark whose block reads intact is forgotten, and does not fail the snapshot', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'c.raw'), 2 * BS);
  const b0 = fillBlock(img, 0, BS, 'c0');
  fillBlock(img, 1, BS, 'c1');
  const disk = await engine.addDisk({ path: img });
  const s1 = await snapshot(engine, disk.id);
  const cow = await engine.cloneCow(s1.id, 'cow');
  const { damaged, catalog } = internals(engine);
  const d0 = Buffer.from(sha(b0), 'hex');
  // A stale mark (say, the repair's commit was cut off by a crash): the file is whole.
  catalog.txn(() => damaged.mark(d0, 'digest-mismatch', 'read', Date.now() - 1000));
  // The copy-on-write disk's block 0 is its base's, not read by its snapshot: checked again instead.
  const k1 = await snapshot(engine, cow.id);
  t.equal(k1.status, 'available');
  t.notOk(damaged.has(d0), 'the intact block is no longer listed');
});

t.test('store verify forgets a listed block it reads intact; the sweep forgets one it unlinks', async (t) => {
  const { engine, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'v.raw'), 2 * BS);
  const b0 = fillBlock(img, 0, BS, 'w0');
  const b1 = fillBlock(img, 1, BS, 'w1');
  const disk = await engine.addDisk({ path: img });
  const s1 = await snapshot(engine, disk.id);
  const { damaged, catalog } = internals(engine);
  const d0 = Buffer.from(sha(b0), 'hex');
  catalog.txn(() => damaged.mark(d0, 'corrupt-header', 'read', Date.now() - 1000));
  t.equal((await verify(engine)).awaitingRepair, 0, 'verify read it intact and forgot it');

  flip(dataDir, sha(b1));
  t.equal((await verify(engine)).awaitingRepair, 1);
  await engine.deleteSnapshot(s1.id);
  await engine.idle();
  t.equal(damaged.count(), 0, 'the damaged file went with its last snapshot, and so did its mark');
});

t.test('a clone that meets a damaged block lists it before its job is seen to end', async (t) => {
  const { engine, images, dataDir } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'r.raw'), BS);
  const b0 = fillBlock(img, 0, BS, 'r0');
  const disk = await engine.addDisk({ path: img });
  const s1 = await snapshot(engine, disk.id);
  flip(dataDir, sha(b0));
  const job = await engine.waitJob(engine.startClone(s1.id, join(images, 'copy.raw')).id);
  t.equal(job.error?.code, 'DigestMismatch');
  t.match(internals(engine).damaged.get(Buffer.from(sha(b0), 'hex')), { reason: 'digest-mismatch', foundBy: 'read' });
  // The next snapshot writes it again (nothing changed in the image since s1).
  await snapshot(engine, disk.id);
  t.equal(payloadSha(dataDir, sha(b0)), sha(b0));
  await finished(engine, engine.startClone(s1.id, join(images, 'copy2.raw')));
  t.ok(readFileSync(join(images, 'copy2.raw')).equals(b0), 'the old snapshot clones bit-exact');
});

t.test('store verify keeps the mark of a block its first pass found damaged, though no snapshot references it by its second', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'k.raw'), BS);
  const b0 = fillBlock(img, 0, BS, 'k0');
  await snapshot(engine, (await engine.addDisk({ path: img })).id);
  const { damaged, catalog } = internals(engine);
  const repair = (engine as unknown as { repair: { afterVerify: (p: unknown[], c: Buffer, at: number, seen: string[]) => number } }).repair;
  const d0 = Buffer.from(sha(b0), 'hex');
  catalog.txn(() => damaged.mark(d0, 'digest-mismatch', 'verify', Date.now() - 1000));
  // Its last snapshot was deleted while verify ran, so the second pass dropped it; the file is
  // still there, damaged, until a sweep: a snapshot of those bytes must still write it again.
  t.equal(repair.afterVerify([], d0, Date.now() - 500, [sha(b0)]), 1, 'still listed');
  t.ok(damaged.get(d0), 'the mark stays');
  t.equal(repair.afterVerify([], d0, Date.now() - 500, []), 0, 'read intact by both passes, it goes');
});
