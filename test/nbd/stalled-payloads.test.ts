/**
 * Clients stopped in the middle of a write's payload: a write's budget is taken only once its
 * payload is here, and a long write waiting for the rest of its payload holds one piece from the
 * long writes' share, so the other clients go on being served; a stopped client is dropped once
 * the stall limit passes.
 */
import t, { type Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { NBD_LONG_WRITE_BYTES } from '../../src/nbd/server';
import { MemoryBackend } from './fixtures/memory-backend';
import type { RawClient } from './fixtures/raw-client';
import { attached, settled, startServer } from './fixtures/serve';

const MiB = 1024 * 1024;
const STALLED = 20;

/**
 * A client on `name` that sends a `length`-byte write with only `sent` bytes of its payload, then
 * nothing. A small read goes first: once it is answered the server has read the write's header
 * (it comes in the same bytes, and the reply waits for the end of the tick).
 */
async function stalledWriter(socketPath: string, name: string, length: number, sent: number): Promise<RawClient> {
  const c = await attached(socketPath, name);
  c.request(C.NBD_CMD_READ, 0, 4096, 0, 1n);
  c.request(C.NBD_CMD_WRITE, 0, length, 0, 2n, Buffer.alloc(sent, 0x5a));
  await c.simpleReply();
  await c.read(4096);
  return c;
}

/** A 4 MiB read of `ro` and a 4 MiB write to `rw` from fresh clients are both answered. */
async function othersServed(t: Test, socketPath: string, ro: MemoryBackend): Promise<void> {
  const reader = await attached(socketPath, 'ro');
  reader.request(C.NBD_CMD_READ, 0, 4 * MiB, 0, 7n);
  t.same(await reader.simpleReply(), { error: 0, handle: 7n }, 'a read on another export is answered');
  t.ok((await reader.read(4 * MiB)).equals(ro.data.subarray(0, 4 * MiB)));
  const writer = await attached(socketPath, 'rw');
  writer.request(C.NBD_CMD_WRITE, 4 * MiB, 4 * MiB, 0, 8n, Buffer.alloc(4 * MiB, 0x33));
  t.same(await writer.simpleReply(), { error: 0, handle: 8n }, 'a write on the stalled writers\' export is answered');
  reader.close();
  writer.close();
}

async function twoExports(t: Test, o = {}, log?: Parameters<typeof startServer>[3]) {
  const ro = new MemoryBackend(8 * MiB, false);
  await ro.write(0, Buffer.alloc(8 * MiB, 0xab), false);
  const rw = new MemoryBackend(16 * MiB);
  const { socketPath, server } = await startServer(t, { ro, rw }, o, log);
  return { socketPath, server, ro, rw };
}

t.test('clients stopped mid-payload of 4 MiB writes hold none of the budget: the others are served', async (t) => {
  const { socketPath, server, ro, rw } = await twoExports(t);
  const stalled = await Promise.all(Array.from({ length: STALLED }, () => stalledWriter(socketPath, 'rw', 4 * MiB, 1)));
  t.equal(await settled(() => server.bytesInFlight), 0, 'nothing is held for them');
  await othersServed(t, socketPath, ro);
  t.equal(rw.writes, 1, 'none of the stopped writes was applied');
  t.notOk(stalled.some((c) => c.closed), 'they are still connected, inside the stall limit');
  for (const c of stalled) c.close();
});

t.test('clients stopped mid-payload of long writes hold at most the long writes\' share: the others are served', async (t) => {
  const { socketPath, server, ro } = await twoExports(t);
  // Each sent the first piece of an 8 MiB write whole, and one byte of the second.
  const stalled = await Promise.all(Array.from({ length: STALLED }, () => stalledWriter(socketPath, 'rw', 8 * MiB, 4 * MiB + 1)));
  t.equal(await settled(() => server.bytesInFlight), NBD_LONG_WRITE_BYTES, 'they hold the long writes\' share, no more');
  await othersServed(t, socketPath, ro);
  for (const c of stalled) c.close();
});

t.test('a client stopped mid-payload is dropped once the stall limit passes, and nothing of its write is applied', async (t) => {
  const warnings: string[] = [];
  const log = { debug() {}, info() {}, warn(_: object, msg?: string) { warnings.push(msg ?? ''); } };
  const { socketPath, server, rw } = await twoExports(t, { stallMs: 300 }, log);
  const short = await stalledWriter(socketPath, 'rw', 4 * MiB, MiB);
  const long = await stalledWriter(socketPath, 'rw', 8 * MiB, 1);
  t.ok(await short.closes(10_000), 'the 4 MiB write\'s client is dropped');
  t.ok(await long.closes(10_000), 'the long write\'s client, stopped inside its first piece, is dropped');
  t.equal(rw.writes, 0);
  t.equal(await settled(() => server.bytesInFlight), 0, 'nothing is held for them');
  t.equal(warnings.filter((m) => /took too long to send a write's payload/.test(m)).length, 2, 'each drop is logged');
});
