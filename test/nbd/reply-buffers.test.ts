import t from 'tap';
import { ReplyBuffers } from '../../src/nbd/reply-buffers';

const KiB = 1024;

t.test('a Buffer given back is handed out again for a reply of its class', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB);
  const a = pool.take(256 * KiB + 28);
  t.equal(a.length, 256 * KiB + 28, 'exactly the length asked for');
  pool.give(a);
  t.ok(pool.idle > 0);
  const b = pool.take(200 * KiB);
  t.equal(b.buffer, a.buffer, 'the same memory');
  t.equal(b.length, 200 * KiB);
  t.equal(pool.idle, 0);
});

t.test('a header and a power-of-two read share one class, not the next one up', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB);
  const a = pool.take(256 * KiB + 28);
  t.ok(a.buffer.byteLength < 257 * KiB, `capacity ${a.buffer.byteLength}`);
});

t.test('Buffers of another class are not reused', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB);
  const small = pool.take(4 * KiB);
  pool.give(small);
  const big = pool.take(64 * KiB);
  t.not(big.buffer, small.buffer);
  t.ok(big.buffer.byteLength >= 64 * KiB);
});

t.test('past the idle cap a returned Buffer is left to the garbage collector', async (t) => {
  const pool = new ReplyBuffers(300 * KiB);
  const a = pool.take(256 * KiB);
  const b = pool.take(256 * KiB);
  pool.give(a);
  pool.give(b);
  t.ok(pool.idle <= 300 * KiB);
  t.equal(pool.take(256 * KiB).buffer, a.buffer);
  t.not(pool.take(256 * KiB).buffer, b.buffer);
});

t.test('a Buffer given twice is handed out once', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB);
  const a = pool.take(8 * KiB);
  pool.give(a);
  pool.give(a);
  const first = pool.take(8 * KiB);
  const second = pool.take(8 * KiB);
  t.equal(first.buffer, a.buffer);
  t.not(second.buffer, a.buffer);
});

t.test('Buffers the pool did not make are never taken in', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB);
  const foreign = Buffer.allocUnsafeSlow(8 * KiB + 64);
  pool.give(foreign);
  t.equal(pool.idle, 0);
  const sliced = pool.take(8 * KiB).subarray(16);
  pool.give(sliced);
  t.equal(pool.idle, 0, 'nor a view that does not start at the Buffer\'s start');
});

/** Polls until `cond` holds; the deadline is generous, for a loaded machine. */
async function until(cond: () => boolean, what: string, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('free Buffers are let go once the pool has gone unused for its period', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB, 50);
  const a = pool.take(64 * KiB);
  const b = pool.take(64 * KiB);
  pool.give(a);
  pool.give(b);
  t.ok(pool.idle > 0);
  await until(() => pool.idle === 0, 'the release');
  t.not(pool.take(64 * KiB).buffer, a.buffer, 'a later reply gets fresh memory');
});

t.test('a pool released once keeps and releases again what it is given later', async (t) => {
  const pool = new ReplyBuffers(1024 * KiB, 50);
  pool.give(pool.take(8 * KiB));
  await until(() => pool.idle === 0, 'the first release');
  const c = pool.take(8 * KiB);
  pool.give(c);
  t.ok(pool.idle > 0, 'kept again');
  await until(() => pool.idle === 0, 'the second release');
});
