import t from 'tap';
import { readdirSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { BlocksnapError } from '../../src/errors';
import { scanImage } from '../../src/native/index';
import {
  BLOCK_FORMAT_VERSION,
  BLOCK_HEADER_SIZE,
  BLOCK_MAGIC,
  ZERO_DIGEST,
  blockPath,
  isZeroDigest,
} from '../../src/store/format';
import { BS, GiB, MiB, digestAt, expectedDigests, makeImage, makeStore, noise, read, sha256 } from './fixtures/images';

function storedBlocks(store: string): string[] {
  return readdirSync(store)
    .filter((d) => d !== 'tmp')
    .flatMap((d) => readdirSync(join(store, d)));
}

t.test('digests of an image whose size is not a multiple of the block size match SHA-256 of each slice', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 5 * BS + 777, [[0, noise(5 * BS + 777)]]);
  const r = await scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: BS });
  t.equal(r.sizeBytes, 5 * BS + 777);
  t.equal(r.blockCount, 6);
  t.same(r.digests, expectedDigests(read(img), BS));
  t.same(digestAt(r.digests, 5), sha256(read(img).subarray(5 * BS)));
});

t.test('a 64 GiB sparse image with a few MiB of data is scanned without reading its holes', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  const pieces: Array<[number, Buffer]> = [
    [0, noise(1 * MiB)],
    [17 * GiB + 3 * MiB, noise(2 * MiB)], // straddles blocks 4352 and 4353
    [64 * GiB - 1 * MiB, noise(1 * MiB)],
  ];
  makeImage(img, 64 * GiB, pieces);
  const started = Date.now();
  const r = await scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: 4 * MiB });
  t.ok(Date.now() - started < 10_000, 'finishes in seconds');
  t.equal(r.blockCount, 16 * 1024);
  t.equal(r.bytesRead, 4 * MiB, 'reads exactly the data');
  t.equal(r.zeroBlocks, r.blockCount - 4);
  t.equal(r.blocksWritten, 4);
});

t.test('blocks of written zeros are ZERO and are not stored', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 4 * BS, [[0, Buffer.alloc(4 * BS)], [2 * BS, noise(10)]]);
  const store = makeStore(dir);
  const r = await scanImage({ imagePath: img, storeDir: store, blockSize: BS });
  t.ok(isZeroDigest(r.digests, 0));
  t.ok(isZeroDigest(r.digests, 32));
  t.notOk(isZeroDigest(r.digests, 64));
  t.ok(isZeroDigest(r.digests, 96));
  t.equal(r.zeroBlocks, 3);
  t.equal(r.bytesRead, 4 * BS);
  t.equal(storedBlocks(store).length, 1);
});

t.test('an empty image has no blocks', async (t) => {
  const dir = t.testdir();
  makeImage(join(dir, 'img'), 0);
  const r = await scanImage({ imagePath: join(dir, 'img'), storeDir: makeStore(dir), blockSize: BS });
  t.match(r, { sizeBytes: 0, blockCount: 0, bytesRead: 0, blocksWritten: 0 });
  t.equal(r.digests.length, 0);
});

t.test('a rescan with the parent digests of an unchanged image writes nothing', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 8 * BS, [[BS, noise(3 * BS)]]);
  const store = makeStore(dir);
  const first = await scanImage({ imagePath: img, storeDir: store, blockSize: BS });
  t.equal(first.blocksWritten, 3);
  t.equal(first.bytesWritten, 3 * BS);
  const second = await scanImage({ imagePath: img, storeDir: store, blockSize: BS, parentDigests: first.digests });
  t.equal(second.blocksWritten, 0);
  t.equal(second.bytesWritten, 0);
  t.same(second.digests, first.digests);
});

t.test('only blocks that differ from the parent are stored', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 8 * BS, [[0, noise(8 * BS)]]);
  const store = makeStore(dir);
  const first = await scanImage({ imagePath: img, storeDir: store, blockSize: BS });
  makeImage(img, 8 * BS, [[0, read(img)], [5 * BS + 9, noise(1)]]);
  const second = await scanImage({ imagePath: img, storeDir: store, blockSize: BS, parentDigests: first.digests });
  t.equal(second.blocksWritten, 1);
  t.equal(storedBlocks(store).length, 9);
});

t.test('a second image with identical content stores nothing new', async (t) => {
  const dir = t.testdir();
  const content = noise(4 * BS + 100);
  makeImage(join(dir, 'a'), content.length, [[0, content]]);
  makeImage(join(dir, 'b'), content.length, [[0, content]]);
  const store = makeStore(dir);
  const a = await scanImage({ imagePath: join(dir, 'a'), storeDir: store, blockSize: BS });
  const b = await scanImage({ imagePath: join(dir, 'b'), storeDir: store, blockSize: BS });
  t.equal(a.blocksWritten, 5);
  t.equal(b.blocksWritten, 0);
  t.same(b.digests, a.digests);
});

t.test('identical blocks within one image are stored once', async (t) => {
  const dir = t.testdir();
  const block = noise(BS);
  makeImage(join(dir, 'img'), 6 * BS, [0, 1, 2, 3, 4, 5].map((i) => [i * BS, block] as [number, Buffer]));
  const store = makeStore(dir);
  const r = await scanImage({ imagePath: join(dir, 'img'), storeDir: store, blockSize: BS, threads: 4 });
  t.equal(r.blocksWritten, 1);
  t.equal(storedBlocks(store).length, 1);
});

t.test('block files carry the header of src/store/format.ts followed by the raw bytes', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  const content = noise(BS + 500);
  makeImage(img, content.length, [[0, content]]);
  const store = makeStore(dir);
  const r = await scanImage({ imagePath: img, storeDir: store, blockSize: BS });
  const digest = digestAt(r.digests, 1);
  const file = readFileSync(blockPath(store, digest.toString('hex')));
  t.equal(file.subarray(0, 8).toString('latin1'), BLOCK_MAGIC);
  t.equal(file.readUInt16LE(8), BLOCK_FORMAT_VERSION);
  t.equal(file.readUInt16LE(10), 0, 'flags: no compression');
  t.equal(file.readUInt32LE(12), BLOCK_HEADER_SIZE);
  t.equal(file.readBigUInt64LE(16), 500n, 'payload length');
  t.equal(file.readBigUInt64LE(24), 500n, 'raw length');
  t.same(file.subarray(32, 64), digest);
  t.same(file.subarray(BLOCK_HEADER_SIZE), content.subarray(BS));
  t.same(readdirSync(join(store, 'tmp')), [], 'no temp files left');
});

t.test('writeBlocks false hashes without touching the store', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 3 * BS, [[0, noise(3 * BS)]]);
  const store = makeStore(dir);
  const r = await scanImage({ imagePath: img, storeDir: store, blockSize: BS, writeBlocks: false });
  t.same(r.digests, expectedDigests(read(img), BS));
  t.equal(r.blocksWritten, 0);
  t.same(readdirSync(store), []);
});

t.test('aborting the signal rejects with Cancelled', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 64 * MiB, [[0, noise(64 * MiB)]]);
  const ac = new AbortController();
  const scan = scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: BS, threads: 1, signal: ac.signal });
  setImmediate(() => ac.abort());
  await t.rejects(scan, { name: 'BlocksnapError', code: 'Cancelled' });
});

t.test('an already aborted signal rejects with Cancelled without starting', async (t) => {
  const dir = t.testdir();
  const err = await scanImage({
    imagePath: join(dir, 'missing'),
    storeDir: dir,
    blockSize: BS,
    signal: AbortSignal.abort(),
  }).catch((e: unknown) => e);
  t.ok(err instanceof BlocksnapError);
  t.equal((err as BlocksnapError).code, 'Cancelled');
});

t.test('progress is reported in bytes and ends with done equal to total', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 3 * BS + 5, [[0, noise(3 * BS + 5)]]);
  const calls: Array<[number, number]> = [];
  await scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: BS, onProgress: (d, n) => calls.push([d, n]) });
  t.ok(calls.length >= 1);
  t.same(calls[calls.length - 1], [3 * BS + 5, 3 * BS + 5]);
  t.ok(calls.every(([d, n]) => d <= n && n === 3 * BS + 5));
});

t.test('a scan counts the image\'s data, not its virtual size: data at the end is not half done before it is read', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 1024 * BS, [[1020 * BS, noise(4 * BS)]]);
  const calls: Array<[number, number]> = [];
  const r = await scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: BS, onProgress: (d, n) => calls.push([d, n]) });
  t.equal(r.progressTotal, 4 * BS);
  t.ok(calls.every(([d, n]) => n === 4 * BS && d <= n), 'every report is of the 4 data blocks, the 1020 holes count nothing');
  t.same(calls[calls.length - 1], [4 * BS, 4 * BS]);
});

t.test('progress is reported while a long scan runs', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, 256 * MiB, [[0, noise(256 * MiB)]]);
  const calls: number[] = [];
  await scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: BS, threads: 1, writeBlocks: true,
    onProgress: (d) => calls.push(d) });
  t.ok(calls.length >= 2, `${calls.length} reports`);
  t.ok(calls.every((d, i) => i === 0 || d >= calls[i - 1]), 'monotonic');
});

t.test('a missing image rejects with ImageNotFound naming the path', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'nope.raw');
  const err = (await scanImage({ imagePath: path, storeDir: dir, blockSize: BS }).catch((e: unknown) => e)) as BlocksnapError;
  t.ok(err instanceof BlocksnapError);
  t.equal(err.code, 'ImageNotFound');
  t.match(err.message, path);
  t.match(err.details, { errno: 2, syscall: 'open', path });
  t.match(err.stack, /scan\.test\.ts/, 'the stack shows the JS caller');
});

t.test('a directory rejects with NotAnImage', async (t) => {
  const dir = t.testdir();
  mkdirSync(join(dir, 'sub'));
  await t.rejects(scanImage({ imagePath: join(dir, 'sub'), storeDir: dir, blockSize: BS }), { code: 'NotAnImage' });
});

t.test('a store directory that does not exist fails with IOError naming it', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'img'), noise(BS));
  await t.rejects(scanImage({ imagePath: join(dir, 'img'), storeDir: join(dir, 'nostore'), blockSize: BS }), {
    code: 'IOError',
    message: /nostore/,
  });
});

t.test('a ZERO parent digest never suppresses a real block', async (t) => {
  const dir = t.testdir();
  const img = join(dir, 'img');
  makeImage(img, BS, [[0, noise(BS)]]);
  const r = await scanImage({ imagePath: img, storeDir: makeStore(dir), blockSize: BS, parentDigests: ZERO_DIGEST });
  t.equal(r.blocksWritten, 1);
});
