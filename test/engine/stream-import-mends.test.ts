/**
 * A stream of a snapshot that is here already, with the same map, mends it (import-mend.ts): the
 * snapshot's blocks that the store lost or holds damaged are written again from the stream, and
 * the catalog is left as it was. A stream with the same id and another map is still refused.
 */
import t from 'tap';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { Engine } from '../../src/engine';
import type { ImportResult } from '../../src/engine/offsite-types';
import type { VerifyResult } from '../../src/engine/types';
import type { Catalog } from '../../src/catalog/catalog';
import type { DamagedBlocks } from '../../src/catalog/damaged-blocks';
import { BLOCK_HEADER_SIZE } from '../../src/store/format';
import { StreamReader, StreamWriter, type StreamHeader } from '../../src/stream/format';
import { engineWithSnapshot, finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { blockPath, flipByte, sha } from '../helpers/store-damage';

const BS = 64 * 1024;

/** Disk vm of 4 blocks, 3 of them filled, snapshotted as s1 and exported to s1.bsnap before any damage. */
async function exportedSnapshot(t: Test) {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 3, disk: 'vm', snapshot: 's1' });
  const original = readFileSync(a.img);
  const stream = join(a.images, 's1.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', stream));
  const block = (i: number): string => blockPath(a.dataDir, sha(pattern(`vm-${i}`, BS)));
  const importIt = (path = stream, disk = 'vm') => a.engine.waitJob(a.engine.offsite.streams.startImport(path, disk).id);
  return { ...a, original, stream, block, importIt };
}

async function verify(engine: Engine): Promise<VerifyResult> {
  return (await finished(engine, engine.startVerify())).result as VerifyResult;
}

async function clonedBytes(engine: Engine, images: string, snap: string, name: string): Promise<Buffer> {
  await finished(engine, engine.startClone(snap, join(images, name)));
  return readFileSync(join(images, name));
}

function damagedList(engine: Engine): DamagedBlocks {
  return (engine as unknown as { repair: { damaged: DamagedBlocks } }).repair.damaged;
}

t.test('a stream of the snapshot writes again a block whose file has a flipped byte', async (t) => {
  const a = await exportedSnapshot(t);
  const before = a.engine.listSnapshots();
  flipByte(a.block(0), BLOCK_HEADER_SIZE + 11);
  const job = await a.importIt();
  t.equal(job.state, 'succeeded', job.error?.message ?? '');
  t.match(job.result as ImportResult, { snapshotId: a.snap.id, name: 's1', mended: true, repairedBlocks: 1, presentBlocks: 2, storedBlocks: 0, storedBytes: 0 });
  t.same(a.engine.listSnapshots(), before, 'the catalog is as it was');
  t.same((await verify(a.engine)).problems, [], 'store verify finds the store whole');
  t.ok((await clonedBytes(a.engine, a.images, 's1', 'clone.raw')).equals(a.original), 'the snapshot clones to the original bytes');
});

t.test('a stream of the snapshot writes again a block whose file is missing', async (t) => {
  const a = await exportedSnapshot(t);
  const before = a.engine.listSnapshots();
  rmSync(a.block(1));
  const job = await a.importIt();
  t.equal(job.state, 'succeeded', job.error?.message ?? '');
  t.match(job.result as ImportResult, { mended: true, repairedBlocks: 1, presentBlocks: 2, storedBlocks: 0 });
  t.same(a.engine.listSnapshots(), before, 'the catalog is as it was');
  t.same((await verify(a.engine)).problems, [], 'store verify finds the store whole');
  t.ok((await clonedBytes(a.engine, a.images, 's1', 'clone.raw')).equals(a.original), 'the snapshot clones to the original bytes');
});

t.test('a mend forgets the marks of the blocks it writes again', async (t) => {
  const a = await exportedSnapshot(t);
  rmSync(a.block(2));
  t.equal((await a.engine.waitJob(a.engine.startClone('s1', join(a.images, 'first.raw')).id)).error?.code, 'BlockMissing');
  t.equal(damagedList(a.engine).count(), 1, 'the clone recorded the lost block');
  t.match((await a.importIt()).result, { mended: true, repairedBlocks: 1 });
  t.equal(damagedList(a.engine).count(), 0);
});

t.test('a stream of an undamaged snapshot writes nothing and changes nothing', async (t) => {
  const a = await exportedSnapshot(t);
  const before = a.engine.listSnapshots();
  const files = [0, 1, 2].map((i) => statSync(a.block(i), { bigint: true }));
  const job = await a.importIt();
  t.equal(job.state, 'succeeded', job.error?.message ?? '');
  t.match(job.result as ImportResult, { mended: true, repairedBlocks: 0, presentBlocks: 3, storedBlocks: 0 });
  t.same(a.engine.listSnapshots(), before, 'the catalog is as it was');
  t.same([0, 1, 2].map((i) => statSync(a.block(i), { bigint: true })).map((s) => [s.ino, s.mtimeNs]), files.map((s) => [s.ino, s.mtimeNs]),
    'no block file was written');
});

/**
 * The stream of `a` rewritten: `header` edits its header, `map` its map, and `blocks` are the
 * blocks it carries then.
 */
async function forgedStream(a: { stream: string; images: string }, o: {
  header?: (h: StreamHeader) => StreamHeader; map?: (m: Buffer) => Buffer; blocks: Buffer[];
}): Promise<string> {
  let at = 0;
  const full = readFileSync(a.stream);
  const r = new StreamReader({ read: async (max) => { const out = full.subarray(at, at + max); at += out.length; return out; } });
  const h = await r.preamble();
  const map = Buffer.from(await r.map(h.snapshot.blockCount));
  const parts: Buffer[] = [];
  const w = new StreamWriter({ write: async (p) => { parts.push(...p.map((x) => Buffer.from(x))); } });
  await w.preamble(o.header ? o.header(h) : h);
  await w.map(o.map ? o.map(map) : map);
  for (const b of o.blocks) await w.block(Buffer.from(sha(b), 'hex'), b);
  await w.end();
  const path = join(a.images, 'forged.bsnap');
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

t.test('a stream with the snapshot\'s id and another map is refused SnapshotExists, and writes nothing', async (t) => {
  const a = await exportedSnapshot(t);
  const before = a.engine.listSnapshots();
  const other = pattern('other', BS);
  const forged = await forgedStream(a, { map: (m) => { Buffer.from(sha(other), 'hex').copy(m, 2 * 32); return m; }, blocks: [other] });
  const job = await a.importIt(forged);
  t.equal(job.error?.code, 'SnapshotExists');
  t.match(job.error?.message, new RegExp(`snapshot ${a.snap.id} is already in this catalog with another block map than the stream's`));
  t.same(a.engine.listSnapshots(), before, 'the catalog is as it was');
  t.throws(() => statSync(blockPath(a.dataDir, sha(other))), { code: 'ENOENT' }, 'the other block was not stored');
});

t.test('a stream with the snapshot\'s id and another size is refused SnapshotExists', async (t) => {
  const a = await exportedSnapshot(t);
  const forged = await forgedStream(a, {
    header: (h) => ({ ...h, snapshot: { ...h.snapshot, sizeBytes: 5 * BS, blockCount: 5 } }),
    map: (m) => Buffer.concat([m, Buffer.alloc(32)]),
    blocks: [],
  });
  const job = await a.importIt(forged);
  t.equal(job.error?.code, 'SnapshotExists');
  t.match(job.error?.message, /with another size than the stream's \(262144 bytes in 4 blocks of 65536, the stream's 327680 in 5 of 65536\)/);
});

t.test('a stream of a snapshot here that is not available is refused SnapshotExists', async (t) => {
  const a = await exportedSnapshot(t);
  const catalog = (a.engine as unknown as { catalog: Catalog }).catalog;
  catalog.txn(() => catalog.putSnapshot({ ...catalog.getSnapshot(a.snap.id)!, status: 'error' }));
  const job = await a.importIt();
  t.equal(job.error?.code, 'SnapshotExists');
  t.match(job.error?.message, /\(error\): a stream mends only an available snapshot/);
});

t.test('a stream of the snapshot imported under another disk is refused, naming the snapshot\'s disk', async (t) => {
  const a = await exportedSnapshot(t);
  await a.engine.addDisk({ path: makeImage(join(a.images, 'other.raw'), 4 * BS), name: 'other' });
  const job = await a.importIt(a.stream, 'other');
  t.equal(job.error?.code, 'SnapshotExists');
  t.match(job.error?.message, /as a snapshot of disk vm: a stream of it mends it only when imported with --disk vm/);
});

/** exportedSnapshot, then block 3 filled, snapshotted as s2 and exported incrementally over s1. */
async function exportedIncrement(t: Test) {
  const a = await exportedSnapshot(t);
  fillBlock(a.img, 3, BS, 'vm-3');
  const s2 = await snapshot(a.engine, 'vm', 's2');
  const increment = join(a.images, 's2-inc.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport('s2', increment, { base: 's1' }));
  return { ...a, s2, increment, original2: readFileSync(a.img) };
}

t.test('an incremental stream whose base is here mends the blocks it carries', async (t) => {
  const a = await exportedIncrement(t);
  rmSync(a.block(3));
  const job = await a.importIt(a.increment);
  t.equal(job.state, 'succeeded', job.error?.message ?? '');
  t.match(job.result as ImportResult, { snapshotId: a.s2.id, mended: true, repairedBlocks: 1, presentBlocks: 0, parentId: a.snap.id });
  t.same((await verify(a.engine)).problems, []);
  t.ok((await clonedBytes(a.engine, a.images, 's2', 'clone.raw')).equals(a.original2), 'the snapshot clones to the original bytes');
});

t.test('an incremental stream mends what it carries and fails naming a damaged block it did not carry', async (t) => {
  const a = await exportedIncrement(t);
  rmSync(a.block(3));
  flipByte(a.block(0), BLOCK_HEADER_SIZE + 11);
  const job = await a.importIt(a.increment);
  t.equal(job.error?.code, 'DigestMismatch');
  t.match(job.error?.message, /and the stream did not carry it \(its base has it\): 1 block was written again from the stream; import a full stream of the snapshot/);
  t.equal(sha(readFileSync(a.block(3)).subarray(BLOCK_HEADER_SIZE)), sha(pattern('vm-3', BS)), 'the block it carried is whole again');
  t.match(damagedList(a.engine).get(Buffer.from(sha(pattern('vm-0', BS)), 'hex')), { reason: 'digest-mismatch' }, 'the other is recorded for repair');
  t.match((await a.importIt()).result, { mended: true, repairedBlocks: 1 }, 'the full stream of the base mends it');
  t.same((await verify(a.engine)).problems, []);
});
