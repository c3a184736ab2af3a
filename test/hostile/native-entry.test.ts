/**
 * Every entry point of the raw native binding, called with hostile values in every field: wrong
 * types, negative, fractional, non-finite and huge sizes, detached (closed) buffers, a buffer
 * detached while the job runs, cancel and release called twice. Each call must throw, reject or
 * succeed; a crash of the addon would take this process down and fail the file.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { nativeAddon } from '../../src/native/index';

type Entry = (...args: unknown[]) => unknown;

const HOSTILE: unknown[] = [
  undefined, null, true, -1, -0, 0.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53 + 2, -(2 ** 63), 1e308,
  '', 'x', '\u0000', 'a'.repeat(100_000), 10n, -10n, Symbol('s'), [], [1, 2], {}, () => 1, new Date(0),
  Buffer.alloc(0), Buffer.alloc(31), Buffer.alloc(33), new Uint16Array(16), new Float64Array(4), new DataView(new ArrayBuffer(8)),
  new Uint8Array(new SharedArrayBuffer(64)),
];

function detached(n: number): Buffer {
  const ab = new ArrayBuffer(n);
  const b = Buffer.from(ab);
  structuredClone(ab, { transfer: [ab] });
  return b;
}

/** Calls fn; resolves with what happened, never lets a rejection or a throw escape. */
async function outcome(fn: () => unknown): Promise<string> {
  let r: unknown;
  try {
    r = fn();
  } catch (err) {
    return `threw ${(err as { code?: string }).code ?? (err as Error).name}`;
  }
  const job = r as { promise?: Promise<unknown>; cancel?: () => void } | undefined;
  if (job && job.promise instanceof Promise) {
    return job.promise.then(() => 'resolved', (err: { code?: string }) => `rejected ${err?.code ?? 'error'}`);
  }
  return 'returned';
}

t.test('hostile values in every field of every entry point throw or reject, never crash', async (t) => {
  const dir = t.testdir();
  // A relative hostile path ('x') names a file some entry points create (an image, a lock file):
  // in the test's directory, not wherever the suite was started.
  const cwd = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  const image = join(dir, 'img.raw');
  const fd = openSync(image, 'w');
  writeSync(fd, Buffer.alloc(128 * 1024, 7));
  closeSync(fd);
  const storeDir = join(dir, 'blocks');
  const addon = nativeAddon() as unknown as Record<string, Entry>;
  const bases: Record<string, Record<string, unknown>> = {
    scanImage: { imagePath: image, storeDir, blockSize: 65536, writeBlocks: false },
    applyImage: { imagePath: join(dir, 'out.raw'), storeDir, blockSize: 65536, sizeBytes: 0, digests: Buffer.alloc(0), mode: 'create' },
    verifyBlocks: { storeDir, digests: Buffer.alloc(0) },
    writeQcow2: { imagePath: join(dir, 'out.qcow2'), storeDir, blockSize: 65536, sizeBytes: 0, digests: Buffer.alloc(0) },
  };
  const extraFields = ['parentDigests', 'threads', 'onProgress', 'format', 'clusterSize'];
  let calls = 0;
  const seen = new Set<string>();
  for (const [name, base] of Object.entries(bases)) {
    if (typeof addon[name] !== 'function') continue;
    for (const field of [...Object.keys(base), ...extraFields]) {
      for (const value of [...HOSTILE, detached(32)]) {
        seen.add(await outcome(() => addon[name]!({ ...base, [field]: value })));
        calls++;
      }
    }
    for (const value of HOSTILE) {
      seen.add(await outcome(() => addon[name]!(value)));
      calls++;
    }
  }
  for (const name of ['hashBuffer', 'lockFile', 'qcow2Header', 'probeImageLocks', 'holdImageLocks']) {
    if (typeof addon[name] !== 'function') continue;
    for (const value of [...HOSTILE, detached(16), join(dir, 'no-such-file'), dir, '/dev/null', `${dir}/${'n'.repeat(5000)}`]) {
      seen.add(await outcome(() => {
        const r = addon[name]!(value) as { release?: () => void } | undefined;
        r?.release?.();
        r?.release?.(); // twice: idempotent, not a double free
        return r;
      }));
      calls++;
    }
  }
  // Two paths: the image, and the new image a rollback would write (named in messages only).
  for (const value of [...HOSTILE, detached(16), join(dir, 'no-such-file'), dir, '/dev/null', `${dir}/${'n'.repeat(5000)}`]) {
    for (const args of [[value, join(dir, '.img.raw.new')], [image, value], [value]]) {
      seen.add(await outcome(() => addon.checkAttributesCopyable!(...args)));
      calls++;
    }
  }
  // The backing file, the image naming it and the name QEMU opens it by (the last two in messages only).
  for (const value of [...HOSTILE, detached(16), join(dir, 'no-such-file'), dir, '/dev/null', `${dir}/${'n'.repeat(5000)}`]) {
    for (const args of [[value, image, 'b.raw'], [image, value, 'b.raw'], [image, image, value], [value]]) {
      seen.add(await outcome(() => addon.probeBackingFormat!(...args)));
      calls++;
    }
  }
  t.ok(calls > 1000, `${calls} hostile calls made, outcomes: ${[...seen].sort().join(', ')}`);
  t.ok([...seen].some((s) => s.startsWith('threw TypeError')), 'wrong types throw TypeError');
  t.ok([...seen].some((s) => s === 'threw InvalidArgument'), 'bad values throw InvalidArgument');
});

t.test('inputs are copied: detaching a buffer while the job runs changes nothing', async (t) => {
  const dir = t.testdir();
  const image = join(dir, 'img.raw');
  const fd = openSync(image, 'w');
  writeSync(fd, Buffer.alloc(4 * 65536, 9));
  closeSync(fd);
  const addon = nativeAddon() as unknown as Record<string, Entry>;
  const ab = new ArrayBuffer(4 * 32);
  const parent = Buffer.from(ab);
  parent.fill(0xee);
  const first = addon.scanImage!({ imagePath: image, storeDir: join(dir, 'blocks'), blockSize: 65536, parentDigests: parent, writeBlocks: false }) as { promise: Promise<{ digests: Buffer }>; cancel(): void };
  structuredClone(ab, { transfer: [ab] });
  const r = await first.promise;
  t.equal(r.digests.length, 4 * 32, 'the scan finished with its own copy');
  first.cancel();
  first.cancel(); // after the end, twice: no effect
  const second = addon.scanImage!({ imagePath: image, storeDir: join(dir, 'blocks'), blockSize: 65536, writeBlocks: false }) as { promise: Promise<unknown>; cancel(): void };
  second.cancel();
  second.cancel();
  const end = await second.promise.then(() => 'resolved', (e: { code?: string }) => e.code);
  t.ok(end === 'resolved' || end === 'Cancelled', `a job cancelled twice ends once (${end})`);
});
