/**
 * Requests longer than the advertised 4 MiB maximum block size, up to the 2^25 bytes the protocol
 * says a client that negotiated no block sizes may send (the Linux kernel's client is one): served,
 * a piece at a time, and cleanly refused only beyond that.
 */
import t, { type Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { MAX_PAYLOAD, MAX_REQUEST_LENGTH } from '../../src/nbd/handshake';
import { MemoryBackend } from './fixtures/memory-backend';
import { attached, chunk, startServer } from './fixtures/serve';

const MiB = 1024 * 1024;

/** Bytes that differ from one 4-byte word to the next, so a misplaced piece shows. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i + 4 <= length; i += 4) b.writeUInt32BE((i * 2654435761 + seed) >>> 0, i);
  return b;
}

async function big(t: Test, o: { writable?: boolean } = {}) {
  const backend = new MemoryBackend(40 * MiB, o.writable ?? true);
  const s = await startServer(t, { big: backend });
  return { ...s, backend };
}

t.test('a 32 MiB write and read of a client that negotiated no block sizes are served, in pieces of at most 4 MiB', async (t) => {
  const { socketPath, backend } = await big(t);
  const c = await attached(socketPath, 'big');
  const data = pattern(MAX_PAYLOAD, 1);
  c.request(C.NBD_CMD_WRITE, 4 * MiB, MAX_PAYLOAD, 0, 1n, data);
  t.same(await c.simpleReply(), { error: 0, handle: 1n });
  t.ok(backend.data.subarray(4 * MiB, 4 * MiB + MAX_PAYLOAD).equals(data), 'the export holds the write');
  t.ok(backend.largestWrite <= MAX_REQUEST_LENGTH, `no more than one piece held at once (${backend.largestWrite} bytes)`);
  c.request(C.NBD_CMD_READ, 4 * MiB, MAX_PAYLOAD, 0, 2n);
  t.same(await c.simpleReply(), { error: 0, handle: 2n });
  t.ok((await c.read(MAX_PAYLOAD, 30_000)).equals(data), 'the read returns it');
  c.close();
});

t.test('a long simple read reply is not interleaved with the replies of requests behind it', async (t) => {
  const { socketPath, backend } = await big(t);
  const data = pattern(10 * MiB, 2);
  await backend.write(0, data, false);
  const c = await attached(socketPath, 'big');
  c.request(C.NBD_CMD_READ, 0, 10 * MiB, 0, 1n);
  c.request(C.NBD_CMD_READ, 0, 4096, 0, 2n);
  c.request(C.NBD_CMD_FLUSH, 0, 0, 0, 3n);
  const seen = new Map<bigint, Buffer | null>();
  for (let i = 0; i < 3; i++) {
    const r = await c.simpleReply();
    t.equal(r.error, 0);
    const length = r.handle === 1n ? 10 * MiB : r.handle === 2n ? 4096 : 0;
    seen.set(r.handle, length > 0 ? await c.read(length, 30_000) : null);
  }
  t.ok(seen.get(1n)!.equals(data), 'the long reply is whole');
  t.ok(seen.get(2n)!.equals(data.subarray(0, 4096)), 'the short one too');
  t.ok(seen.has(3n));
  c.close();
});

t.test('a long structured read is answered in chunks that cover it, the last one DONE', async (t) => {
  const { socketPath, backend } = await big(t);
  const data = pattern(20 * MiB, 3);
  await backend.write(MiB, data, false);
  const c = await attached(socketPath, 'big', true);
  c.request(C.NBD_CMD_READ, MiB, 20 * MiB, 0, 1n);
  const got = Buffer.alloc(20 * MiB);
  let covered = 0;
  const kinds = new Set<string>();
  for (;;) {
    const ch = await chunk(c);
    kinds.add(`${ch.handle} ${ch.type}`);
    const at = Number(ch.data.readBigUInt64BE(0)) - MiB;
    ch.data.copy(got, at, 8);
    covered += ch.data.length - 8;
    if (ch.flags & C.NBD_REPLY_FLAG_DONE) break;
  }
  t.same([...kinds], [`1 ${C.NBD_REPLY_TYPE_OFFSET_DATA}`], 'data chunks of this request only');
  t.equal(covered, 20 * MiB);
  t.ok(got.equals(data));
  c.close();
});

t.test('reads beyond 2^25, and unfragmented reads beyond 4 MiB, are refused with an error reply and the connection goes on', async (t) => {
  const { socketPath } = await big(t);
  const simple = await attached(socketPath, 'big');
  simple.request(C.NBD_CMD_READ, 0, MAX_PAYLOAD + 1, 0, 1n);
  t.same(await simple.simpleReply(), { error: C.NBD_EINVAL, handle: 1n }, 'simple: EINVAL');
  simple.request(C.NBD_CMD_READ, 0, 512, 0, 2n);
  t.same(await simple.simpleReply(), { error: 0, handle: 2n });
  await simple.read(512);
  simple.close();

  const structured = await attached(socketPath, 'big', true);
  structured.request(C.NBD_CMD_READ, 0, MAX_PAYLOAD + 1, 0, 3n);
  const over = await chunk(structured);
  t.same([over.type, over.data.readUInt32BE(0)], [C.NBD_REPLY_TYPE_ERROR, C.NBD_EOVERFLOW], 'structured: EOVERFLOW');
  structured.request(C.NBD_CMD_READ, 0, 8 * MiB, C.NBD_CMD_FLAG_DF, 4n);
  const df = await chunk(structured);
  t.same([df.type, df.data.readUInt32BE(0)], [C.NBD_REPLY_TYPE_ERROR, C.NBD_EOVERFLOW], 'DF over one piece: EOVERFLOW');
  structured.request(C.NBD_CMD_READ, 0, 4 * MiB, C.NBD_CMD_FLAG_DF, 5n);
  const whole = await chunk(structured);
  t.same([whole.type, whole.data.length], [C.NBD_REPLY_TYPE_OFFSET_DATA, 8 + 4 * MiB], 'DF up to one piece is served');
  structured.close();
});

t.test('a write beyond 2^25 closes the connection', async (t) => {
  const { socketPath } = await big(t);
  const c = await attached(socketPath, 'big');
  c.request(C.NBD_CMD_WRITE, 0, MAX_PAYLOAD + 1, 0, 1n, Buffer.alloc(64 * 1024));
  t.ok(await c.closes());
});

t.test('a client stopped in the middle of a long write\'s payload is dropped after the stall limit', async (t) => {
  // The payload's later pieces are awaited inside the backend's writeAsOne: a served disk's
  // snapshot waits for them, so a client that stops sending must not hold it off for long.
  const backend = new MemoryBackend(40 * MiB);
  const { socketPath } = await startServer(t, { big: backend }, { stallMs: 300 });
  const c = await attached(socketPath, 'big');
  c.request(C.NBD_CMD_WRITE, 0, 8 * MiB, 0, 1n, pattern(5 * MiB, 5));
  t.ok(await c.closes(10_000), 'the connection is closed');
  t.equal(backend.writes, 1, 'only the piece that arrived whole was written');
});

t.test('the rest of a long write\'s payload has one deadline: pieces each just in time do not hold the gate for longer', async (t) => {
  const backend = new MemoryBackend(40 * MiB);
  const { socketPath } = await startServer(t, { big: backend }, { stallMs: 300 });
  const c = await attached(socketPath, 'big');
  c.request(C.NBD_CMD_WRITE, 0, 12 * MiB, 0, 1n, pattern(4 * MiB, 6));
  await new Promise((r) => setTimeout(r, 200));
  c.write(pattern(4 * MiB, 7));
  await new Promise((r) => setTimeout(r, 200));
  c.write(pattern(4 * MiB, 8));
  t.ok(await c.closes(10_000), 'the connection is closed');
  t.ok(backend.writes < 3, `the last piece, late overall, was not written (${backend.writes} written)`);
});

t.test('a refused long write has its payload consumed: the connection stays in step', async (t) => {
  const { socketPath, backend } = await big(t, { writable: false });
  const c = await attached(socketPath, 'big');
  c.request(C.NBD_CMD_WRITE, 0, 9 * MiB, 0, 1n, pattern(9 * MiB, 4));
  t.same(await c.simpleReply(), { error: C.NBD_EPERM, handle: 1n });
  c.request(C.NBD_CMD_READ, 0, 4096, 0, 2n);
  t.same(await c.simpleReply(), { error: 0, handle: 2n }, 'the next request is read as a request');
  t.ok((await c.read(4096)).equals(Buffer.alloc(4096)));
  t.equal(backend.largestWrite, 0);
  c.close();
});

t.test('a long simple read that fails after its header went out ends the connection rather than send wrong data', async (t) => {
  const backend = new MemoryBackend(40 * MiB, true);
  await backend.write(0, pattern(8 * MiB, 5), false);
  const readInto = backend.readInto.bind(backend);
  backend.readInto = async (offset, length, target, at) => {
    if (offset >= MAX_REQUEST_LENGTH) throw new Error('the disk is gone');
    return readInto(offset, length, target, at);
  };
  const { socketPath } = await startServer(t, { big: backend });
  const c = await attached(socketPath, 'big');
  c.request(C.NBD_CMD_READ, 0, 8 * MiB, 0, 1n);
  t.same(await c.simpleReply(), { error: 0, handle: 1n }, 'the first piece read well');
  await t.rejects(c.read(8 * MiB, 10_000), /connection closed after/, 'the reply stops short: the server hung up');
});
