/**
 * Read replies a client does not read stay inside the server's byte budget: a reply holds its
 * bytes until the socket has written it, not just until it was queued.
 */
import t from 'tap';
import * as C from '../../src/nbd/constants';
import { NBD_BYTES_IN_FLIGHT } from '../../src/nbd/server';
import { CONNECTION_BYTES } from '../../src/nbd/transmission';
import { MemoryBackend } from './fixtures/memory-backend';
import type { RawClient } from './fixtures/raw-client';
import { attached, settled, startServer } from './fixtures/serve';

const MiB = 1024 * 1024;

/** `count` pipelined 4 MiB reads from a client that then reads nothing. */
function flood(c: RawClient, count: number): void {
  c.socket.pause();
  for (let i = 0; i < count; i++) c.request(C.NBD_CMD_READ, 0, 4 * MiB, 0, BigInt(i));
}

t.test('replies that clients never read are held within the server\'s budget', async (t) => {
  const { socketPath, server } = await startServer(t, { rw: new MemoryBackend(4 * MiB) });
  const clients: RawClient[] = [];
  for (let i = 0; i < 8; i++) {
    const c = await attached(socketPath, 'rw');
    flood(c, 32);
    clients.push(c);
  }
  const unsent = await settled(() => server.unsentBytes + server.bytesInFlight);
  t.ok(server.unsentBytes <= NBD_BYTES_IN_FLIGHT + 64 * 1024, `${server.unsentBytes} bytes queued unsent`);
  t.ok(server.bytesInFlight <= NBD_BYTES_IN_FLIGHT, `${server.bytesInFlight} bytes held`);
  t.ok(unsent > 0, 'the clients did leave replies unread');
  for (const c of clients) c.close();
});

t.test('one client that never reads holds at most its share, and others are still served', async (t) => {
  const { socketPath, server } = await startServer(t, { rw: new MemoryBackend(4 * MiB) });
  const hog = await attached(socketPath, 'rw');
  flood(hog, 32);
  const held = await settled(() => server.bytesInFlight);
  t.ok(held <= CONNECTION_BYTES, `${held} bytes held for it`);
  const other = await attached(socketPath, 'rw');
  other.request(C.NBD_CMD_READ, 0, 4 * MiB, 0, 9n);
  t.same(await other.simpleReply(), { error: 0, handle: 9n });
  t.equal((await other.read(4 * MiB)).length, 4 * MiB);
  hog.close();
  other.close();
});

t.test('a client that takes none of its replies for too long is dropped, and its bytes come back', async (t) => {
  const { socketPath, server } = await startServer(t, { rw: new MemoryBackend(4 * MiB) }, { stallMs: 300 });
  const hog = await attached(socketPath, 'rw');
  flood(hog, 32);
  // The client's socket is paused, so it would not see the close: ask the server.
  const until = Date.now() + 10_000;
  while (server.connectionCount > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  t.equal(server.connectionCount, 0, 'the server closed the connection');
  t.equal(await settled(() => server.bytesInFlight), 0, 'nothing is held for it any more');
  hog.close();
});

t.test('a client that reads slowly but steadily is not taken for a stalled one', async (t) => {
  // The limit is far above a step (~150 ms) so that a loaded machine, where this process may not
  // run for a while, does not pass for a stalled reader; the whole read still lasts longer.
  const stallMs = 2000;
  const { socketPath, server } = await startServer(t, { rw: new MemoryBackend(4 * MiB) }, { stallMs });
  const slow = await attached(socketPath, 'rw');
  slow.socket.pause();
  for (let i = 0; i < 8; i++) slow.request(C.NBD_CMD_READ, 0, 4 * MiB, 0, BigInt(i));
  // About 1 MiB taken off the socket every 100 ms: the server's writes keep stalling on a full
  // socket, yet each one moves well inside the stall limit, and 32 MiB take seconds.
  const started = Date.now();
  const total = slow.socket.bytesRead + 8 * (16 + 4 * MiB);
  let backedUp = 0;
  while (slow.socket.bytesRead < total && !slow.closed) {
    await new Promise((r) => setTimeout(r, 100));
    backedUp = Math.max(backedUp, server.unsentBytes);
    const target = slow.socket.bytesRead + MiB;
    slow.socket.resume();
    const until = Date.now() + 50;
    while (slow.socket.bytesRead < target && Date.now() < until) await new Promise((r) => setImmediate(r));
    slow.socket.pause();
  }
  t.ok(Date.now() - started > stallMs, 'the whole read outlasted the stall limit');
  t.ok(backedUp > 0, `replies waited for the slow reader (${backedUp} bytes unsent at most)`);
  t.notOk(slow.closed, 'still connected');
  for (let i = 0; i < 8; i++) {
    t.same(await slow.simpleReply(), { error: 0, handle: BigInt(i) });
    await slow.read(4 * MiB);
  }
  slow.close();
});
