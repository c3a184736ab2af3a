import t from 'tap';
import { createHash } from 'node:crypto';

import { BlocksnapError } from '../../src/errors';
import { applyImage, hashBuffer, nativeAddon, scanImage, verifyBlocks } from '../../src/native/index';

const GARBAGE: unknown[] = [undefined, null, 42, 'str', [], () => 1, Symbol('s'), 10n];

t.test('the raw binding throws TypeError for anything but an options object', async (t) => {
  const addon = nativeAddon() as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const name of ['scanImage', 'applyImage', 'verifyBlocks']) {
    for (const g of GARBAGE) t.throws(() => addon[name](g), TypeError, `${name}(${String(g)})`);
    t.throws(() => addon[name](), TypeError, `${name}()`);
  }
});

t.test('the raw binding throws TypeError for fields of the wrong type', async (t) => {
  const addon = nativeAddon() as unknown as Record<string, (o: unknown) => unknown>;
  const scan = { imagePath: '/x', storeDir: '/y', blockSize: 65536 };
  t.throws(() => addon.scanImage({ ...scan, imagePath: 5 }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, storeDir: {} }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, blockSize: '65536' }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, parentDigests: 'aa' }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, parentDigests: new Uint16Array(16) }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, damagedDigests: 'aa' }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, writeBlocks: 1 }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, threads: 'many' }), TypeError);
  t.throws(() => addon.scanImage({ ...scan, onProgress: 1 }), TypeError);
  const apply = { ...scan, sizeBytes: 0, digests: Buffer.alloc(0), mode: 'create' };
  t.throws(() => addon.applyImage({ ...apply, digests: [1, 2] }), TypeError);
  t.throws(() => addon.applyImage({ ...apply, mode: 1 }), TypeError);
  t.throws(() => addon.applyImage({ ...apply, sizeBytes: null }), TypeError);
  t.throws(() => addon.verifyBlocks({ storeDir: '/y', digests: 'x' }), TypeError);
  t.throws(() => addon.hashBuffer('text' as unknown), TypeError);
});

t.test('the raw binding rejects bad values with code InvalidArgument', async (t) => {
  const addon = nativeAddon() as unknown as Record<string, (o: unknown) => unknown>;
  const scan = { imagePath: '/x', storeDir: '/y', blockSize: 65536 };
  for (const bad of [
    { ...scan, blockSize: 65535 },
    { ...scan, blockSize: -1 },
    { ...scan, blockSize: 1.5 },
    { ...scan, blockSize: NaN },
    { ...scan, imagePath: '' },
    { ...scan, imagePath: 'a\0b' },
    { ...scan, parentDigests: Buffer.alloc(31) },
    { ...scan, damagedDigests: Buffer.alloc(33) },
    { ...scan, threads: 0 },
  ]) {
    t.throws(() => addon.scanImage(bad), { code: 'InvalidArgument' });
  }
  t.throws(() => addon.applyImage({ ...scan, sizeBytes: 65537, digests: Buffer.alloc(32), mode: 'create' }), { code: 'InvalidArgument' });
  t.throws(() => addon.applyImage({ ...scan, sizeBytes: 0, digests: Buffer.alloc(0), mode: 'overwrite' }), { code: 'InvalidArgument' });
  t.throws(() => addon.applyImage({ ...scan, sizeBytes: 0, digests: Buffer.alloc(0), mode: 'create', beforeWrite: () => true }), { code: 'InvalidArgument' });
});

t.test('the wrappers reject wrong arguments with InvalidArgument in one message format', async (t) => {
  const base = { imagePath: '/x', storeDir: '/y', blockSize: 65536 };
  const cases: Array<[Promise<unknown>, RegExp]> = [
    [scanImage(null as never), /^options must be an object, got null$/],
    [scanImage({ ...base, imagePath: 3 as never }), /^imagePath must be a non-empty path string, got 3$/],
    [scanImage({ ...base, blockSize: 1000 }), /^blockSize must be a power of two from 64 KiB to 64 MiB, got 1000$/],
    [scanImage({ ...base, parentDigests: Buffer.alloc(33) }), /^parentDigests must be a multiple of 32 bytes long, got a Buffer of 33 bytes$/],
    [scanImage({ ...base, damagedDigests: Buffer.alloc(31) }), /^damagedDigests must be a multiple of 32 bytes long, got a Buffer of 31 bytes$/],
    [scanImage({ ...base, threads: 0 }), /^threads must be an integer from 1 to 1024, got 0$/],
    [scanImage({ ...base, onProgress: 'x' as never }), /^onProgress must be a function, got "x"$/],
    [scanImage({ ...base, signal: {} as never }), /^signal must be an AbortSignal, got an object$/],
    [applyImage({ ...base, sizeBytes: 65537, digests: Buffer.alloc(32), mode: 'create' }), /^digests must be ceil\(sizeBytes \/ blockSize\) \* 32 = 64 bytes long/],
    [applyImage({ ...base, sizeBytes: -1, digests: Buffer.alloc(0), mode: 'create' }), /^sizeBytes must be a non-negative safe integer, got -1$/],
    [applyImage({ ...base, sizeBytes: 0, digests: Buffer.alloc(0), mode: 'copy' as never }), /^mode must be 'create' or 'update', got "copy"$/],
    [applyImage({ ...base, sizeBytes: 0, digests: Buffer.alloc(0), mode: 'create', beforeWrite: () => {} }), /^beforeWrite must be a function, in mode 'update', got /],
    [verifyBlocks({ storeDir: '/y', digests: [] as never }), /^digests must be a Buffer, got an array$/],
  ];
  for (const [promise, message] of cases) {
    const err = await promise.catch((e: unknown) => e);
    t.ok(err instanceof BlocksnapError, String(message));
    t.equal((err as BlocksnapError).code, 'InvalidArgument');
    t.match((err as BlocksnapError).message, message);
  }
});

t.test('hashBuffer is SHA-256', async (t) => {
  for (const data of [Buffer.alloc(0), Buffer.from('abc'), Buffer.alloc(1 << 20, 7)]) {
    t.same(hashBuffer(data), createHash('sha256').update(data).digest());
  }
  t.throws(() => hashBuffer('abc' as never), { code: 'InvalidArgument' });
});
