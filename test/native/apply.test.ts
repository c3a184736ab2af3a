import t from 'tap';
import { closeSync, existsSync, openSync, readFileSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { BlocksnapError } from '../../src/errors';
import { applyImage, scanImage } from '../../src/native/index';
import { BLOCK_HEADER_SIZE, blockPath } from '../../src/store/format';
import { BS, MiB, allocatedBytes, digestAt, makeImage, makeStore, noise, read } from './fixtures/images';

/** A source image (data, holes, written zeros, short tail) scanned into a fresh store. */
async function snapshot(dir: string) {
  const source = join(dir, 'source');
  makeImage(source, 16 * BS + 4321, [
    [0, noise(2 * BS)],
    [5 * BS, Buffer.alloc(BS)], // written zeros
    [8 * BS, noise(3 * BS)],
    [16 * BS, noise(4321)],
  ]);
  const store = makeStore(dir);
  const scan = await scanImage({ imagePath: source, storeDir: store, blockSize: BS });
  return { source, store, scan };
}

t.test('apply create makes a sparse, bit-exact copy', async (t) => {
  const dir = t.testdir();
  const { source, store, scan } = await snapshot(dir);
  const copy = join(dir, 'copy');
  const r = await applyImage({ imagePath: copy, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'create' });
  t.same(read(copy), read(source));
  t.same(r, {
    blocksWritten: 6, bytesWritten: 5 * BS + 4321, holesPunched: 0, blocksUnchanged: 11, blocksZeroed: 0, progressTotal: 5 * BS + 4321,
  }, 'ZERO blocks need no write, nor count as work');
  t.ok(allocatedBytes(copy) <= 6 * BS, `only data is allocated (${allocatedBytes(copy)} bytes)`);
  t.equal(statSync(copy).mode & 0o777, 0o600);
});

t.test('apply create counts the data pages it writes, not the zero pages of a block it leaves holes', async (t) => {
  const dir = t.testdir();
  const source = join(dir, 'source');
  makeImage(source, 2 * BS, [[0, noise(BS / 2)], [BS + BS / 4, noise(4096)]]);
  const store = makeStore(dir);
  const scan = await scanImage({ imagePath: source, storeDir: store, blockSize: BS });
  const r = await applyImage({ imagePath: join(dir, 'copy'), storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'create' });
  t.equal(r.blocksWritten, 2);
  t.equal(r.bytesWritten, BS / 2 + 4096);
});

t.test('apply update counts the data pages it writes, not the zero pages of a block over a hole', async (t) => {
  const dir = t.testdir();
  const source = join(dir, 'source');
  makeImage(source, 2 * BS, [[0, noise(BS / 2)]]);
  const store = makeStore(dir);
  const scan = await scanImage({ imagePath: source, storeDir: store, blockSize: BS });
  const target = join(dir, 'target');
  makeImage(target, 2 * BS, []);
  const r = await applyImage({ imagePath: target, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' });
  t.equal(r.blocksWritten, 1);
  t.equal(r.bytesWritten, BS / 2);
  t.same(read(target), read(source));
});

t.test('apply create of an all-ZERO image makes a file of the right size with nothing allocated', async (t) => {
  const dir = t.testdir();
  const store = makeStore(dir);
  const copy = join(dir, 'copy');
  await applyImage({ imagePath: copy, storeDir: store, blockSize: BS, sizeBytes: 10 * MiB, digests: Buffer.alloc(160 * 32), mode: 'create' });
  t.equal(statSync(copy).size, 10 * MiB);
  t.equal(allocatedBytes(copy), 0);
});

t.test('apply create refuses an existing file with FileExists and leaves it alone', async (t) => {
  const dir = t.testdir();
  const { source, store, scan } = await snapshot(dir);
  const existing = join(dir, 'existing');
  writeFileSync(existing, 'keep me');
  await t.rejects(
    applyImage({ imagePath: existing, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'create' }),
    { code: 'FileExists' },
  );
  t.equal(readFileSync(existing, 'utf8'), 'keep me');
  t.ok(existsSync(source));
});

t.test('apply update writes only the blocks that differ', async (t) => {
  const dir = t.testdir();
  const { source, store, scan } = await snapshot(dir);
  const target = join(dir, 'target');
  const content = read(source);
  noise(10).copy(content, 1 * BS + 100);
  noise(10).copy(content, 9 * BS);
  makeImage(target, content.length, [[0, content]]);
  const r = await applyImage({ imagePath: target, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' });
  t.equal(r.blocksWritten, 2);
  t.equal(r.bytesWritten, 2 * BS);
  t.equal(r.blocksUnchanged, scan.blockCount - 2);
  t.same(read(target), read(source));
});

t.test('apply update punches holes where the target is ZERO', async (t) => {
  const dir = t.testdir();
  const { source, store, scan } = await snapshot(dir);
  const target = join(dir, 'target');
  makeImage(target, scan.sizeBytes, [[0, read(source)], [12 * BS, noise(2 * BS)]]);
  const before = allocatedBytes(target);
  const r = await applyImage({ imagePath: target, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' });
  t.equal(r.holesPunched, 2);
  t.equal(r.blocksZeroed, 0, 'none written as zeros where the filesystem punches');
  t.equal(r.blocksWritten, 0);
  t.same(read(target), read(source));
  t.ok(allocatedBytes(target) <= before - 2 * BS, 'the punched blocks no longer take space');
});

t.test('apply update sets the exact size, shrinking or growing the image', async (t) => {
  const dir = t.testdir();
  const { source, store, scan } = await snapshot(dir);
  const longer = join(dir, 'longer');
  makeImage(longer, scan.sizeBytes + 5 * BS, [[0, read(source)], [scan.sizeBytes + BS, noise(BS)]]);
  await applyImage({ imagePath: longer, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' });
  t.same(read(longer), read(source));
  const shorter = join(dir, 'shorter');
  makeImage(shorter, 3 * BS, [[0, read(source).subarray(0, 3 * BS)]]);
  await applyImage({ imagePath: shorter, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' });
  t.same(read(shorter), read(source));
});

t.test('apply rejects a corrupted block with DigestMismatch and never writes it', async (t) => {
  const dir = t.testdir();
  const { store, scan } = await snapshot(dir);
  const digest = digestAt(scan.digests, 9).toString('hex');
  const file = blockPath(store, digest);
  const bytes = readFileSync(file);
  bytes[BLOCK_HEADER_SIZE + 1234] ^= 0x40;
  writeFileSync(file, bytes);
  const target = join(dir, 'target');
  makeImage(target, scan.sizeBytes);
  const err = (await applyImage({ imagePath: target, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' })
    .catch((e: unknown) => e)) as BlocksnapError;
  t.ok(err instanceof BlocksnapError);
  t.equal(err.code, 'DigestMismatch');
  t.match(err.message, digest);
  t.match(err.details, { blockIndex: 9, digest, path: file });
  t.ok(read(target).subarray(9 * BS, 10 * BS).every((b) => b === 0), 'block 9 of the image is untouched');
});

t.test('apply reports a missing block with BlockMissing and removes the file it was creating', async (t) => {
  const dir = t.testdir();
  const { store, scan } = await snapshot(dir);
  const digests = Buffer.from(scan.digests);
  digests[8 * 32] ^= 0xff; // a digest the store does not have
  const copy = join(dir, 'copy');
  const err = (await applyImage({ imagePath: copy, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests, mode: 'create' })
    .catch((e: unknown) => e)) as BlocksnapError;
  t.equal(err.code, 'BlockMissing');
  t.match(err.details, { blockIndex: 8 });
  t.notOk(existsSync(copy));
});

t.test('apply rejects a block file whose header is wrong with BlockCorrupt', async (t) => {
  const dir = t.testdir();
  const { store, scan } = await snapshot(dir);
  const file = blockPath(store, digestAt(scan.digests, 0).toString('hex'));
  const bytes = readFileSync(file);
  bytes.write('XSNAPBLK', 0, 'latin1');
  writeFileSync(file, bytes);
  await t.rejects(
    applyImage({ imagePath: join(dir, 'copy'), storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'create' }),
    { code: 'BlockCorrupt', message: /magic/ },
  );
});

t.test('apply update never writes through a symlink', async (t) => {
  const dir = t.testdir();
  const { store, scan } = await snapshot(dir);
  const victim = join(dir, 'victim');
  makeImage(victim, scan.sizeBytes);
  symlinkSync(victim, join(dir, 'link'));
  await t.rejects(
    applyImage({ imagePath: join(dir, 'link'), storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' }),
    { code: 'NotAnImage' },
  );
  t.ok(read(victim).every((b) => b === 0), 'the symlink target is untouched');
});

t.test('apply update of a missing image rejects with ImageNotFound', async (t) => {
  const dir = t.testdir();
  const { store, scan } = await snapshot(dir);
  await t.rejects(
    applyImage({ imagePath: join(dir, 'nope'), storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update' }),
    { code: 'ImageNotFound' },
  );
});

t.test('apply create progress ends with the length of the blocks it wrote done, writing', async (t) => {
  const dir = t.testdir();
  const { store, scan } = await snapshot(dir);
  const calls: Array<[number, number, string | undefined]> = [];
  await applyImage({ imagePath: join(dir, 'copy'), storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'create',
    onProgress: (d, n, phase) => calls.push([d, n, phase]) });
  t.same(calls[calls.length - 1], [5 * BS + 4321, 5 * BS + 4321, 'writing']);
});

t.test('apply update progress counts the data compared, then the blocks written, and its share done never goes back', async (t) => {
  const dir = t.testdir();
  // 64 blocks whose data, 8 blocks, sits at the end; 3 of them then overwritten.
  const image = join(dir, 'image');
  makeImage(image, 64 * BS, [[56 * BS, noise(8 * BS)]]);
  const store = makeStore(dir);
  const scan = await scanImage({ imagePath: image, storeDir: store, blockSize: BS });
  const fd = openSync(image, 'r+');
  writeSync(fd, noise(BS), 0, BS, 57 * BS);
  writeSync(fd, noise(2 * BS), 0, 2 * BS, 60 * BS);
  closeSync(fd);
  const calls: Array<[number, number, string | undefined]> = [];
  const r = await applyImage({ imagePath: image, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update',
    onProgress: (d, n, phase) => calls.push([d, n, phase]) });
  t.equal(r.bytesWritten, 3 * BS);
  t.ok(calls.every(([d], i) => i === 0 || d >= calls[i - 1]![0]), 'done never decreases');
  const phases = calls.map(([, , phase]) => phase).filter((p, i, all) => i === 0 || p !== all[i - 1]);
  t.ok(phases.join() === 'writing' || phases.join() === 'comparing,writing', `comparing, then writing (${phases.join()})`);
  t.ok(calls.every(([d, n], i) => i === 0 || d / n >= calls[i - 1]![0] / calls[i - 1]![1]), 'the share done never decreases, at the change of phase either');
  t.ok(calls.every(([d, n, phase]) => phase !== 'comparing' || (n <= 16 * BS && n >= 11 * BS && d <= 8 * BS)),
    'comparing counts the 8 data blocks, not the 56 holes, and at most the 8 blocks it may write');
  t.equal(calls[0]![1], 16 * BS, 'the total starts as the data to compare and every block that may need writing');
  t.same(calls[calls.length - 1], [8 * BS + 3 * BS, 8 * BS + 3 * BS, 'writing'], 'writing adds the bytes it wrote');
});

/** A blank image of the snapshot's size in `dir`, and an update of it to the snapshot with `o` added. */
async function blankUpdate(dir: string, o: Partial<Parameters<typeof applyImage>[0]>) {
  const { source, store, scan } = await snapshot(dir);
  const target = join(dir, 'target');
  makeImage(target, scan.sizeBytes);
  const before = read(target);
  const update = (): Promise<unknown> =>
    applyImage({ imagePath: target, storeDir: store, blockSize: BS, sizeBytes: scan.sizeBytes, digests: scan.digests, mode: 'update', ...o });
  return { source, target, before, update };
}

t.test('apply update calls beforeWrite once, with the image still as it was, and writes after it returned', async (t) => {
  const seen: boolean[] = [];
  const u = await blankUpdate(t.testdir(), { beforeWrite: () => { seen.push(read(u.target).equals(u.before)); } });
  await u.update();
  t.same(seen, [true], 'called once, before any change');
  t.same(read(u.target), read(u.source));
});

t.test('a throwing beforeWrite fails apply update with what it threw, marked imageUnchanged, the image untouched', async (t) => {
  const u = await blankUpdate(t.testdir(), { beforeWrite: () => { throw new BlocksnapError('NoSpace', 'no room for the journal'); } });
  await t.rejects(u.update(), { code: 'NoSpace', message: 'no room for the journal', details: { imageUnchanged: true } });
  t.ok(read(u.target).equals(u.before));
});

t.test('apply update cancelled while beforeWrite runs writes nothing', async (t) => {
  const abort = new AbortController();
  const u = await blankUpdate(t.testdir(), { signal: abort.signal, beforeWrite: () => abort.abort() });
  await t.rejects(u.update(), { code: 'Cancelled', details: { imageUnchanged: true } });
  t.ok(read(u.target).equals(u.before));
});
