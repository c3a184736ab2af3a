/**
 * Copy-on-write volumes (src/native/volume.ts) over a real snapshot in a real block store: every
 * result is compared with an in-memory model of the disk's content.
 */
import t from 'tap';
import type { Test } from 'tap';
import { existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { BlocksnapError } from '../../src/errors';
import { nativeAddon, scanImage } from '../../src/native/index';
import { MAX_VOLUME_IO, Volume, createLayer, type LayerFiles } from '../../src/native/volume';
import { COW_GRANULE_SIZE, COW_VERSION_OFFSET } from '../../src/store/cow-format';
import { BLOCK_HEADER_SIZE, DIGEST_SIZE, blockPath } from '../../src/store/format';
import { granulePath } from '../../src/store/granule-format';
import { Random, seedFrom } from '../helpers/random';
import { KiB, allocatedBytes, expectedDigests, makeImage, makeStore, noise } from './fixtures/images';

const BLOCK = 256 * KiB;
// Not a multiple of the granule: the last granule and the last block are short.
const SIZE = 24 * BLOCK + 5000;
const G = COW_GRANULE_SIZE;
/** A granule file's granule (core/granule_file.h): what the base is verified by. */
const BASE_G = 64 * KiB;

interface Disk {
  dir: string;
  store: string;
  base: Buffer;
  digests: Buffer;
  model: Buffer;
  layer(name: string): LayerFiles;
}

/** A base snapshot with data, a hole block and written zeros, scanned into a fresh store. */
async function makeDisk(t: Test): Promise<Disk> {
  const dir = t.testdir();
  const store = makeStore(dir);
  const base = Buffer.alloc(SIZE);
  noise(SIZE).copy(base);
  base.fill(0, 3 * BLOCK, 5 * BLOCK); // two ZERO blocks
  base.fill(0, 10 * BLOCK + 100, 10 * BLOCK + 9000);
  const img = join(dir, 'base.img');
  makeImage(img, SIZE, [[0, base.subarray(0, 3 * BLOCK)], [5 * BLOCK, base.subarray(5 * BLOCK)]]);
  const scan = await scanImage({ imagePath: img, storeDir: store, blockSize: BLOCK });
  t.same(scan.digests, expectedDigests(base, BLOCK), 'the base snapshot holds the base content');
  return {
    dir, store, base, digests: scan.digests, model: Buffer.from(base),
    layer: (name) => ({ dataPath: join(dir, `${name}.data`), mapPath: join(dir, `${name}.map`) }),
  };
}

function openVolume(d: Disk, layers: LayerFiles[], writable: boolean, digests = d.digests): Promise<Volume> {
  return Volume.open({ storeDir: d.store, blockSize: BLOCK, sizeBytes: SIZE, baseDigests: digests, layers, writable });
}

/** A disk with one fresh writable layer "a" over its base. */
async function writableDisk(t: Test): Promise<{ d: Disk; v: Volume }> {
  const d = await makeDisk(t);
  await createLayer(d.layer('a'), SIZE, 'a');
  return { d, v: await openVolume(d, [d.layer('a')], true) };
}

/** Random writes, zeros, reads and flushes, mirrored into d.model; reads are checked against it. */
async function randomOps(t: Test, v: Volume, d: Disk, rnd: Random, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const offset = rnd.int(0, SIZE - 1);
    const length = Math.min(SIZE - offset, rnd.chance(0.2) ? rnd.int(1, 64 * G) : rnd.int(1, 16 * KiB));
    const op = rnd.int(0, 9);
    if (op < 5) {
      const data = rnd.bytes(length);
      await v.write(offset, data, rnd.chance(0.1));
      data.copy(d.model, offset);
    } else if (op < 7) {
      await v.zero(offset, length, rnd.chance(0.5), false);
      d.model.fill(0, offset, offset + length);
    } else if (op < 9) {
      const got = await v.read(offset, length);
      if (!got.equals(d.model.subarray(offset, offset + length))) {
        t.fail(`read ${offset}+${length} differs from the model (seed ${rnd.seed}, op ${i})`);
        return;
      }
    } else {
      await v.flush();
    }
  }
}

async function readAll(v: Volume): Promise<Buffer> {
  return v.read(0, v.sizeBytes);
}

t.test('random writes, zeros and reads agree with a model of the disk', async (t) => {
  const { d, v } = await writableDisk(t);
  const rnd = new Random(seedFrom('VOLUME_SEED'));
  await randomOps(t, v, d, rnd, 400);
  t.ok((await readAll(v)).equals(d.model), `the whole volume equals the model (seed ${rnd.seed})`);
  await v.close();
});

t.test('pushLayer, dirtyBlocks and scanBlocks give the digests of the content at the push', async (t) => {
  const { d, v } = await writableDisk(t);
  const rnd = new Random(seedFrom('VOLUME_SEED'));
  await randomOps(t, v, d, rnd, 150);
  const atPush = Buffer.from(d.model);

  await createLayer(d.layer('b'), SIZE, 'b');
  await v.pushLayer(d.layer('b'));
  t.equal(v.layerCount(), 2);
  // Writes after the push go to the new top and must not reach the scan of the frozen layer.
  await randomOps(t, v, d, rnd, 100);

  const dirty = await v.dirtyBlocks(1);
  t.ok(dirty.length > 0 && dirty.length <= Math.ceil(SIZE / BLOCK), `${dirty.length} dirty blocks`);
  const scan = await v.scanBlocks({ blocks: dirty, layerCount: 1, threads: 2 });
  const digests = Buffer.from(d.digests);
  dirty.forEach((b, k) => scan.digests.copy(digests, b * DIGEST_SIZE, k * DIGEST_SIZE, (k + 1) * DIGEST_SIZE));
  t.same(digests, expectedDigests(atPush, BLOCK), 'base digests with the dirty ones replaced = digests of the content');
  const undirtied = [...Array(Math.ceil(SIZE / BLOCK)).keys()].filter((b) => !dirty.includes(b));
  t.ok(undirtied.every((b) => digests.subarray(b * 32, b * 32 + 32).equals(d.digests.subarray(b * 32, b * 32 + 32))),
    'blocks not reported dirty kept their base digest');

  // The engine commits that snapshot, then rebases: the frozen layer is gone, reads do not change.
  await v.rebase(digests, 1);
  t.equal(v.layerCount(), 1);
  t.ok((await readAll(v)).equals(d.model), 'after the rebase the volume reads the same (from the new base)');
  await v.close();

  // The new base alone (no layers) is the content at the push: its blocks are in the store.
  const snapshot = await openVolume(d, [], false, digests);
  t.ok((await readAll(snapshot)).equals(atPush), 'the scanned blocks were stored');
  await snapshot.close();
});

t.test('reopening after a flush keeps the flushed data', async (t) => {
  const { d, v } = await writableDisk(t);
  await randomOps(t, v, d, new Random(seedFrom('VOLUME_SEED')), 100);
  await v.flush();
  const reopened = await openVolume(d, [d.layer('a')], false);
  t.ok((await readAll(reopened)).equals(d.model));
  await reopened.close();
  await v.close();
});

t.test('a whole-granule zero with mayPunch leaves a hole reported as hole+zero', async (t) => {
  const { d, v } = await writableDisk(t);
  await v.write(0, noise(8 * G), false);
  const before = allocatedBytes(d.layer('a').dataPath);
  await v.zero(2 * G, 4 * G, true, false);
  t.ok(allocatedBytes(d.layer('a').dataPath) <= before - 4 * G, 'the space was released');
  t.same(await v.extents(0, 8 * G, 1024), [{ length: 2 * G, flags: 0 }, { length: 4 * G, flags: 3 }, { length: 2 * G, flags: 0 }]);
  t.ok((await v.read(2 * G, 4 * G)).equals(Buffer.alloc(4 * G)));
  await v.close();
});

t.test('extents report base ZERO blocks as hole+zero', async (t) => {
  const d = await makeDisk(t);
  const v = await openVolume(d, [], false);
  t.same(await v.extents(2 * BLOCK, 4 * BLOCK, 1024), [
    { length: BLOCK, flags: 0 }, { length: 2 * BLOCK, flags: 3 }, { length: BLOCK, flags: 0 },
  ]);
  await v.close();
});

t.test('extents stop at the count asked for, the last one whole', async (t) => {
  const { v } = await writableDisk(t);
  // Over the ZERO blocks 3 and 4: two granules written, then every other one.
  await v.write(3 * BLOCK, noise(2 * G), false);
  for (let g = 3; g < (2 * BLOCK) / G; g += 2) await v.write(3 * BLOCK + g * G, noise(G), false);
  const all = await v.extents(3 * BLOCK, 2 * BLOCK, 1024);
  t.equal(all.length, (2 * BLOCK) / G - 1);
  t.same(await v.extents(3 * BLOCK, 2 * BLOCK, 1), [{ length: 2 * G, flags: 0 }], 'not cut at the first granule');
  t.same(await v.extents(3 * BLOCK, 2 * BLOCK, 5), all.slice(0, 5));
  await t.rejects(v.extents(0, BLOCK, 0), { code: 'InvalidArgument' });
  await v.close();
});

t.test('concurrent writes into one granule all land', async (t) => {
  const { v } = await writableDisk(t);
  const pieces = Array.from({ length: 8 }, () => noise(G / 8));
  await Promise.all(pieces.map((p, i) => v.write(G + i * (G / 8), p, false)));
  t.ok((await v.read(G, G)).equals(Buffer.concat(pieces)));
  await v.close();
});

t.test('many small writes at once into granules the top holds all land', async (t) => {
  const { v } = await writableDisk(t);
  await v.write(0, noise(4 * G), false); // whole granules: these small writes copy nothing up
  const pieces = Array.from({ length: 64 }, () => noise(4 * G / 64));
  await Promise.all(pieces.map((p, i) => v.write(i * (4 * G / 64), p, false)));
  t.ok((await v.read(0, 4 * G)).equals(Buffer.concat(pieces)));
  await v.close();
});

t.test('one failed write of a native batch fails alone', async (t) => {
  const { d, v } = await writableDisk(t);
  await v.close();
  const addon = nativeAddon() as unknown as { Volume: new (spec: unknown) => Record<string, (...a: unknown[]) => Promise<unknown>> };
  const raw = new addon.Volume({ storeDir: d.store, blockSize: BLOCK, sizeBytes: SIZE, baseDigests: d.digests, layers: [d.layer('a')], writable: true });
  const a = noise(4 * KiB), b = noise(4 * KiB);
  const outcomes = await raw.writeBatch!([0, SIZE, 4 * KiB], [a, b, b]) as Array<{ code?: string } | undefined>;
  t.equal(outcomes.length, 3);
  t.equal(outcomes[0], undefined);
  t.equal(outcomes[1]?.code, 'InvalidArgument', 'the write past the end');
  t.equal(outcomes[2], undefined);
  t.equal(await raw.writeBatch!([0], [a]), undefined, 'a batch that all succeeds resolves undefined');
  const out = Buffer.alloc(8 * KiB);
  await raw.readInto!(0, 8 * KiB, out, 0);
  t.ok(out.equals(Buffer.concat([a, b])));
  await raw.close!();
});

t.test('a read on the calling thread refuses a block not verified yet and serves it once verified', async (t) => {
  const d = await makeDisk(t);
  const addon = nativeAddon() as unknown as {
    Volume: (new (spec: unknown) => Record<string, (...a: unknown[]) => unknown>) & { open(spec: unknown): Promise<unknown> };
  };
  const raw = new addon.Volume({ storeDir: d.store, blockSize: BLOCK, sizeBytes: SIZE, baseDigests: d.digests, layers: [], writable: false });
  const out = Buffer.alloc(4 * KiB);
  t.equal(raw.readCached!(BLOCK + 100, 4 * KiB, out, 0), false, 'a first touch verifies: pool work');
  await raw.readInto!(BLOCK + 100, 4 * KiB, out, 0);
  out.fill(0);
  // Served only where the kernel can say what it caches (cachestat, Linux 6.5).
  if (raw.readCached!(BLOCK + 100, 4 * KiB, out, 0)) t.ok(out.equals(d.base.subarray(BLOCK + 100, BLOCK + 100 + 4 * KiB)));
  t.equal(raw.readCached!(SIZE - 10, 20, out, 0), false, 'out of range: left to the read that reports it');
  await (raw.close!() as Promise<void>);
});

t.test('a map with a bad header is ImageCorrupt naming the file', async (t) => {
  const d = await makeDisk(t);
  const files = d.layer('a');
  await createLayer(files, SIZE, 'a');
  const map = readFileSync(files.mapPath);
  map.writeUInt16LE(7, COW_VERSION_OFFSET);
  writeFileSync(files.mapPath, map);
  const err = await openVolume(d, [files], true).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof BlocksnapError, 'a BlocksnapError');
  t.match(err, { code: 'ImageCorrupt', message: /version/, details: { path: files.mapPath } });
});

t.test('a map made for another size is ImageCorrupt', async (t) => {
  const d = await makeDisk(t);
  await createLayer(d.layer('a'), SIZE - 1, 'a');
  await t.rejects(openVolume(d, [d.layer('a')], true), { code: 'ImageCorrupt' });
});

t.test('an open that fails reports its coded error through the promise', async (t) => {
  const d = await makeDisk(t);
  const missing = Volume.open({ storeDir: d.store, blockSize: BLOCK, sizeBytes: SIZE, baseDigests: d.digests, layers: [d.layer('gone')], writable: true });
  t.ok(missing instanceof Promise, 'the open does not throw: it runs on the pool');
  await t.rejects(missing, { code: 'ImageNotFound', details: { path: d.layer('gone').dataPath } });
});

t.test('an open with a bad argument rejects with InvalidArgument', async (t) => {
  const d = await makeDisk(t);
  const short = Volume.open({ storeDir: d.store, blockSize: BLOCK, sizeBytes: SIZE, baseDigests: d.digests.subarray(32), layers: [], writable: false });
  await t.rejects(short, { code: 'InvalidArgument', details: { argument: 'baseDigests' } });
});

t.test('reads during a rebase see the same content before, during and after it', async (t) => {
  const { d, v } = await writableDisk(t);
  await randomOps(t, v, d, new Random(seedFrom('VOLUME_SEED')), 100);
  await createLayer(d.layer('b'), SIZE, 'b');
  await v.pushLayer(d.layer('b'));
  const dirty = await v.dirtyBlocks(1);
  const scan = await v.scanBlocks({ blocks: dirty, layerCount: 1, threads: 2 });
  const digests = Buffer.from(d.digests);
  dirty.forEach((b, k) => scan.digests.copy(digests, b * DIGEST_SIZE, k * DIGEST_SIZE, (k + 1) * DIGEST_SIZE));
  const [, ...reads] = await Promise.all([v.rebase(digests, 1), readAll(v), readAll(v), readAll(v)]);
  t.ok(reads.every((r) => r.equals(d.model)), 'every read issued with the rebase equals the model');
  t.equal(v.layerCount(), 1, 'the frozen layer is gone');
  t.ok((await readAll(v)).equals(d.model), 'and after it');
  await v.close();
});

t.test('a rebase that would drop the writable top rejects and changes nothing', async (t) => {
  const { d, v } = await writableDisk(t);
  const data = noise(3 * G);
  await v.write(0, data, false);
  data.copy(d.model, 0);
  await t.rejects(v.rebase(d.digests, 1), { code: 'InvalidArgument' });
  t.equal(v.layerCount(), 1);
  t.ok((await readAll(v)).equals(d.model), 'the volume reads as before');
  await v.close();
});

t.test('createLayer refuses to overwrite a layer', async (t) => {
  const d = await makeDisk(t);
  await createLayer(d.layer('a'), SIZE, 'a');
  await t.rejects(createLayer(d.layer('a'), SIZE, 'a'), { code: 'FileExists' });
});

t.test('I/O past the end, on a read-only volume or after close is refused', async (t) => {
  const d = await makeDisk(t);
  await createLayer(d.layer('a'), SIZE, 'a');
  const ro = await openVolume(d, [d.layer('a')], false);
  await t.rejects(ro.read(SIZE - 10, 11), { code: 'InvalidArgument' });
  await t.rejects(ro.write(0, Buffer.alloc(1), false), { code: 'InvalidArgument' });
  await ro.close();
  await t.rejects(ro.read(0, 1), { code: 'Internal' });
});

t.test('a read with a bad length or target range is InvalidArgument, before anything is allocated', async (t) => {
  const d = await makeDisk(t);
  await createLayer(d.layer('a'), SIZE, 'a');
  const ro = await openVolume(d, [d.layer('a')], false);
  t.teardown(() => ro.close());
  await t.rejects(ro.read(0, -1), { code: 'InvalidArgument' });
  await t.rejects(ro.read(0, MAX_VOLUME_IO + 1), { code: 'InvalidArgument' });
  await t.rejects(ro.readInto(0, 8, Buffer.alloc(8), 1), { code: 'InvalidArgument' });
});

t.test('flattenTo raw writes the content at the push as a sparse file', async (t) => {
  const { d, v } = await writableDisk(t);
  await randomOps(t, v, d, new Random(seedFrom('VOLUME_SEED')), 100);
  const out = join(d.dir, 'flat.raw');
  const r = await v.flattenTo({ layerCount: 1, imagePath: out, format: 'raw' });
  t.equal(r.sizeBytes, SIZE);
  t.ok(readFileSync(out).equals(d.model));
  t.ok(allocatedBytes(out) < SIZE, 'the ZERO blocks stayed holes');
  await v.close();
});

t.test('flattenTo qcow2 writes an image whose content is the volume', async (t) => {
  const { d, v } = await writableDisk(t);
  await randomOps(t, v, d, new Random(seedFrom('VOLUME_SEED')), 100);
  const out = join(d.dir, 'flat.qcow2');
  await v.flattenTo({ layerCount: 1, imagePath: out, format: 'qcow2' });
  const scan = await scanImage({ imagePath: out, format: 'qcow2', storeDir: d.store, blockSize: BLOCK, writeBlocks: false });
  t.same(scan.digests, expectedDigests(Buffer.concat([d.model, Buffer.alloc(scan.sizeBytes - SIZE)]), BLOCK));
  await v.close();
});

t.test('the raw binding throws or rejects on hostile arguments, never crashes', async (t) => {
  const { d, v } = await writableDisk(t);
  await v.close();
  const addon = nativeAddon() as unknown as {
    Volume: (new (spec: unknown) => Record<string, (...a: unknown[]) => unknown>) & { open(spec: unknown): Promise<unknown> };
  };
  const hostile: unknown[] = [undefined, null, -1, 0.5, NaN, 2 ** 53 + 2, '', 'x', {}, [], Buffer.alloc(3), new Uint16Array(2), () => 1];
  const spec = {
    storeDir: d.store, granuleDir: join(d.dir, 'granules'), blockSize: BLOCK, sizeBytes: SIZE, baseDigests: d.digests, layers: [d.layer('a')], writable: true,
  };
  const outcomes = new Set<string>();
  const record = async (fn: () => unknown): Promise<void> => {
    try {
      const r = fn() as { promise?: Promise<unknown> } | Promise<unknown> | undefined;
      const p = r instanceof Promise ? r : r?.promise;
      if (p instanceof Promise) await p.then(() => outcomes.add('resolved'), (e: { code?: string }) => outcomes.add(`rejected ${e.code}`));
      else outcomes.add('returned');
    } catch (e) {
      outcomes.add(`threw ${(e as { code?: string }).code ?? (e as Error).name}`);
    }
  };
  for (const field of Object.keys(spec)) {
    for (const value of hostile) await record(() => new addon.Volume({ ...spec, [field]: value }));
    for (const value of hostile) await record(() => addon.Volume.open({ ...spec, [field]: value }));
  }
  await record(() => (addon.Volume as unknown as () => unknown)());
  await record(() => addon.Volume.open.call(undefined, spec));
  const raw = new addon.Volume(spec);
  for (const method of ['read', 'write', 'writeBatch', 'readCached', 'writeCopiesUp', 'zero', 'extents', 'pushLayer', 'dirtyBlocks', 'scanBlocks', 'flattenTo', 'rebase']) {
    for (const a of hostile) {
      for (const b of hostile) await record(() => raw[method]!(a, b, a, b));
    }
  }
  await record(() => raw.read!.call({}, 0, 1));
  await record(() => raw.close!());
  for (const a of hostile) await record(() => raw.read!(0, a));
  t.ok(outcomes.has('threw TypeError'), `outcomes: ${[...outcomes].sort().join(', ')}`);
});

t.test('a damaged base block fails the read that first touches it with DigestMismatch and its index', async (t) => {
  const d = await makeDisk(t);
  const digest = d.digests.subarray(1 * DIGEST_SIZE, 2 * DIGEST_SIZE).toString('hex');
  const path = blockPath(d.store, digest);
  const file = readFileSync(path);
  file[BLOCK_HEADER_SIZE + 10] ^= 0xff;
  writeFileSync(path, file);
  const v = await openVolume(d, [], false);
  await t.rejects(v.read(BLOCK + 4096, 4096), { code: 'DigestMismatch', details: { blockIndex: 1, digest } });
  t.ok((await v.read(0, BLOCK)).equals(d.base.subarray(0, BLOCK)), 'other blocks still read');
  await v.close();
});

/** A fresh writable volume over d's base, as a new clone is, using the granule files in d.dir/granules. */
async function clone(d: Disk, name: string): Promise<Volume> {
  await createLayer(d.layer(name), SIZE, name);
  return Volume.open({
    storeDir: d.store, granuleDir: join(d.dir, 'granules'), blockSize: BLOCK, sizeBytes: SIZE, baseDigests: d.digests,
    layers: [d.layer(name)], writable: true,
  });
}

/** One byte read at `offset`, then closed: what writes the granule file of that block. */
async function readOnce(v: Volume, offset: number): Promise<void> {
  await v.read(offset, 1);
  await v.close();
}

function granuleFile(d: Disk, block: number): string {
  return granulePath(join(d.dir, 'granules'), d.digests.subarray(block * DIGEST_SIZE, (block + 1) * DIGEST_SIZE).toString('hex'));
}

t.test('a copy-up verifies its whole base block once; the granule file then spares the next clone', async (t) => {
  const d = await makeDisk(t);
  const first = await clone(d, 'a');
  await first.write(6 * BLOCK + BASE_G + 512, noise(512), false); // a 4 KiB granule in part: a copy-up
  t.equal(first.storeBytesRead(), BLOCK, 'the first clone read the whole block to verify it');
  t.ok(existsSync(granuleFile(d, 6)), 'and recorded its granule digests');
  await first.close();

  const second = await clone(d, 'b');
  const bytes = noise(512);
  await second.write(6 * BLOCK + BASE_G + 512, bytes, false);
  t.equal(second.storeBytesRead(), BASE_G, 'the second clone read and hashed one granule');
  const expected = Buffer.from(d.base.subarray(6 * BLOCK, 7 * BLOCK));
  bytes.copy(expected, BASE_G + 512);
  t.ok((await second.read(6 * BLOCK, BLOCK)).equals(expected), 'and reads the write over the base');
  await second.close();
});

t.test('a damaged granule file is ignored and rewritten', async (t) => {
  const d = await makeDisk(t);
  await readOnce(await clone(d, 'a'), 7 * BLOCK);
  const good = readFileSync(granuleFile(d, 7));
  const bad = Buffer.from(good);
  bad[100] ^= 1;
  writeFileSync(granuleFile(d, 7), bad);
  const v = await clone(d, 'b');
  t.ok((await v.read(7 * BLOCK + 2 * BASE_G, 4 * KiB)).equals(d.base.subarray(7 * BLOCK + 2 * BASE_G, 7 * BLOCK + 2 * BASE_G + 4 * KiB)));
  t.equal(v.storeBytesRead(), BLOCK, 'the whole block was verified instead');
  t.same(readFileSync(granuleFile(d, 7)), good, 'and the file written again from it');
  truncateSync(granuleFile(d, 7), 50);
  const w = await clone(d, 'c');
  await w.read(7 * BLOCK, 1);
  t.equal(w.storeBytesRead(), BLOCK, 'a torn file is ignored too');
  t.same(readFileSync(granuleFile(d, 7)), good);
  await v.close();
  await w.close();
});

t.test('a damaged block with a valid granule file is DigestMismatch for the damaged granule', async (t) => {
  const d = await makeDisk(t);
  await readOnce(await clone(d, 'a'), 1 * BLOCK);
  t.ok(existsSync(granuleFile(d, 1)));
  const digest = d.digests.subarray(1 * DIGEST_SIZE, 2 * DIGEST_SIZE).toString('hex');
  const path = blockPath(d.store, digest);
  const file = readFileSync(path);
  file[BLOCK_HEADER_SIZE + 2 * BASE_G + 10] ^= 0xff;
  writeFileSync(path, file);
  const v = await clone(d, 'b');
  await t.rejects(v.read(BLOCK + 2 * BASE_G + 4096, 4096), { code: 'DigestMismatch', message: /granule 2/, details: { blockIndex: 1, digest } });
  await t.rejects(v.write(BLOCK + 2 * BASE_G, noise(512), false), { code: 'DigestMismatch', details: { blockIndex: 1, digest } },
    'no copy-up of the damaged granule either');
  t.ok((await v.read(BLOCK, BASE_G)).equals(d.base.subarray(BLOCK, BLOCK + BASE_G)), 'granules that match their digests still read');
  await v.close();
});
