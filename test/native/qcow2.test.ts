/**
 * The qcow2 and image-lock calls of the native wrapper: argument checks at both layers, error
 * codes crossing into JS, and a scan → writeQcow2 → scan round trip through the typed API.
 */
import t from 'tap';
import { mkdirSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  holdImageLocks, nativeAddon, probeImageLocks, qcow2Header, scanImage, writeQcow2,
} from '../../src/native/index';
import { pattern } from '../helpers/images';

const BS = 64 * 1024;

t.test('the raw binding throws TypeError for garbage', async (t) => {
  const addon = nativeAddon() as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const g of [undefined, null, 42, [], () => 1]) t.throws(() => addon.writeQcow2!(g), TypeError, `writeQcow2(${String(g)})`);
  for (const name of ['qcow2Header', 'probeImageLocks', 'holdImageLocks']) {
    for (const g of [undefined, null, 42, {}]) t.throws(() => addon[name]!(g), TypeError, `${name}(${String(g)})`);
  }
  for (const g of [null, 42, {}]) t.throws(() => addon.qcow2Header!('/x', g), TypeError, `qcow2Header('/x', ${String(g)})`);
  const w = { imagePath: '/x', storeDir: '/y', blockSize: BS, sizeBytes: 0, digests: Buffer.alloc(0) };
  t.throws(() => addon.writeQcow2!({ ...w, clusterBits: '16' }), TypeError);
  t.throws(() => addon.writeQcow2!({ ...w, clusterBits: 30 }), { code: 'InvalidArgument' });
  t.throws(() => addon.writeQcow2!({ ...w, version: 4 }), { code: 'InvalidArgument' });
  t.throws(() => addon.writeQcow2!({ ...w, backingFile: 'b', backingFormat: 'vmdk' }), { code: 'InvalidArgument' });
  const chain = [{ path: '/b', realPath: '/b', format: 'raw' }];
  t.throws(() => addon.writeQcow2!({ ...w, backingFile: 'b', backingFormat: 'raw' }), { code: 'InvalidArgument' }, 'a backing file comes with its checked chain');
  t.throws(() => addon.writeQcow2!({ ...w, backingChain: chain }), { code: 'InvalidArgument' }, 'and a chain only with a backing file');
  t.throws(() => addon.writeQcow2!({ ...w, compressionType: 'lz4' }), { code: 'InvalidArgument' });
  t.throws(() => addon.writeQcow2!({ ...w, version: 2, compressionType: 'zstd' }), { code: 'InvalidArgument' });
});

t.test('the typed wrapper names the bad argument', async (t) => {
  const ok = { imagePath: '/x', storeDir: '/y', blockSize: BS, sizeBytes: BS, digests: Buffer.alloc(32) };
  await t.rejects(writeQcow2({ ...ok, digests: Buffer.alloc(64) }), { code: 'InvalidArgument', message: /^digests must be/ });
  await t.rejects(writeQcow2({ ...ok, clusterBits: 8 }), { code: 'InvalidArgument', message: /^clusterBits must be/ });
  await t.rejects(writeQcow2({ ...ok, version: 1 as 2 }), { code: 'InvalidArgument', message: /^version must be/ });
  await t.rejects(writeQcow2({ ...ok, backing: { file: '', format: 'raw', chain: [] } }), { code: 'InvalidArgument', message: /^backing\.file must be/ });
  await t.rejects(writeQcow2({ ...ok, backing: { file: 'b', format: 'raw', chain: [] } }), { code: 'InvalidArgument', message: /^backing\.chain must be/ });
  await t.rejects(writeQcow2({ ...ok, compressionType: 'lz4' as 'zstd' }), { code: 'InvalidArgument', message: /^compressionType must be/ });
  await t.rejects(scanImage({ imagePath: '/x', storeDir: '/y', blockSize: BS, format: 'vmdk' as 'raw' }), { code: 'InvalidArgument', message: /^format must be/ });
  t.throws(() => qcow2Header(''), { code: 'InvalidArgument' });
  t.throws(() => qcow2Header('/x', { namedAs: '' }), { code: 'InvalidArgument', message: /^namedAs must be/ });
});

t.test('qcow2Header and the lock calls report codes', async (t) => {
  const dir = t.testdir();
  const raw = join(dir, 'plain.raw');
  writeFileSync(raw, Buffer.alloc(4096));
  t.throws(() => qcow2Header(raw), { code: 'NotAnImage' });
  t.throws(() => qcow2Header(join(dir, 'missing')), { code: 'ImageNotFound' });
  t.throws(() => probeImageLocks(join(dir, 'missing')), { code: 'ImageNotFound' });
  t.same(probeImageLocks(raw), { held: [], notShared: [] });
  const held = holdImageLocks(raw);
  t.match(probeImageLocks(raw).held, ['consistent read', 'write', 'write unchanged', 'resize']);
  held.release();
  held.release();
  t.same(probeImageLocks(raw), { held: [], notShared: [] }, 'released, and release is idempotent');
});

t.test('qcow2Header resolves the backing name from the name the image is known by and opens no backing file', async (t) => {
  const dir = t.testdir();
  const store = join(dir, 'blocks');
  mkdirSync(store);
  const img = join(dir, 'over.qcow2');
  // Written against its backing file, which is gone before the header is read.
  const base = join(dir, 'missing.raw');
  writeFileSync(base, Buffer.alloc(BS));
  await writeQcow2({
    imagePath: img, storeDir: store, blockSize: BS, sizeBytes: BS, digests: Buffer.alloc(32),
    backing: { file: 'missing.raw', format: 'raw', chain: [{ path: base, realPath: realpathSync(base), format: 'raw' }] },
  });
  unlinkSync(base);
  t.match(qcow2Header(img), { backingFile: 'missing.raw', backingPath: join(dir, 'missing.raw'), backingFormat: 'raw' }, 'a missing backing file is no error here');
  t.match(qcow2Header(img, { namedAs: '/vms/over.qcow2' }), { backingPath: '/vms/missing.raw' });
  const h = qcow2Header(img);
  t.ok(typeof h.dev === 'bigint' && typeof h.ino === 'bigint', 'the file read is identified');
});

t.test('scan of a written qcow2 gives back the same digests', async (t) => {
  const dir = t.testdir();
  const store = join(dir, 'blocks');
  mkdirSync(store);
  const raw = join(dir, 'src.raw');
  const content = Buffer.concat([pattern('a', BS), Buffer.alloc(BS), pattern('b', BS), Buffer.alloc(1000)]);
  writeFileSync(raw, content);
  const first = await scanImage({ imagePath: raw, storeDir: store, blockSize: BS });
  const img = join(dir, 'out.qcow2');
  const w = await writeQcow2({ imagePath: img, storeDir: store, blockSize: BS, sizeBytes: first.sizeBytes, digests: first.digests, clusterBits: 12 });
  t.equal(w.sizeBytes, Math.ceil(content.length / 512) * 512, 'the virtual size is rounded up to whole sectors');
  t.equal(w.blocksWritten, 2, 'ZERO blocks are not written');
  const info = qcow2Header(img);
  t.match(info, { version: 3, clusterBits: 12, internalSnapshots: 0, bitmaps: 0, compressionType: 'zlib', backingFile: null, backingPath: null, backingFormat: null });
  const again = await scanImage({ imagePath: img, format: 'qcow2', storeDir: store, blockSize: BS, writeBlocks: false });
  t.same(again.digests.subarray(0, 3 * 32), first.digests.subarray(0, 3 * 32), 'full blocks identical');
  t.equal(again.zeroBlocks, 2, 'ZERO blocks stay ZERO');
  await t.rejects(writeQcow2({ imagePath: img, storeDir: store, blockSize: BS, sizeBytes: first.sizeBytes, digests: first.digests }), { code: 'FileExists' });
});
