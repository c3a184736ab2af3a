/**
 * Ending connections from the server's side (an export stopped or dropping its clients, the
 * server closing), as the protocol asks: requests running finish and are answered, requests read
 * afterwards are answered NBD_ESHUTDOWN without running, then the connection closes; and never
 * later than the grace period, whatever the backend or the client does.
 */
import t, { type Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { GatedBackend } from './fixtures/memory-backend';
import { RawClient } from './fixtures/raw-client';
import { attached, startServer } from './fixtures/serve';

const KiB = 1024;
const MiB = 1024 * KiB;

async function gated(t: Test, shutdownGraceMs = 5_000) {
  const backend = new GatedBackend(4 * MiB);
  await backend.write(0, Buffer.alloc(64 * KiB, 0x5c), false);
  backend.calls = 0;
  const s = await startServer(t, { disk: backend }, { shutdownGraceMs });
  return { ...s, backend };
}

/** A client whose 4 KiB read (handle 1) the backend holds when the export drops its clients. */
async function droppedWithAReadInFlight(t: Test) {
  const { socketPath, exports, backend } = await gated(t);
  const c = await attached(socketPath, 'disk');
  backend.hold();
  c.request(C.NBD_CMD_READ, 0, 4096, 0, 1n);
  await backend.arrived(1);
  exports.drop('disk');
  return { c, backend };
}

t.test('dropping an export\'s clients lets a request in flight finish and be answered, then closes', async (t) => {
  const { c, backend } = await droppedWithAReadInFlight(t);
  backend.release();
  t.same(await c.simpleReply(), { error: 0, handle: 1n });
  t.ok((await c.read(4096)).equals(Buffer.alloc(4096, 0x5c)), 'with its data');
  t.ok(await c.closes(), 'then the connection closes');
});

t.test('a request read after the drop is answered NBD_ESHUTDOWN and never reaches the backend', async (t) => {
  const { c, backend } = await droppedWithAReadInFlight(t);
  c.request(C.NBD_CMD_WRITE, 0, 4096, 0, 2n, Buffer.alloc(4096, 0xee));
  t.same(await c.simpleReply(), { error: C.NBD_ESHUTDOWN, handle: 2n });
  backend.release();
  t.same(await c.simpleReply(), { error: 0, handle: 1n }, 'the one in flight is still answered');
  await c.read(4096);
  t.equal(backend.calls, 1, 'the write did not run');
  t.ok(backend.data.subarray(0, 4096).equals(Buffer.alloc(4096, 0x5c)));
  t.ok(await c.closes());
});

t.test('closing the server waits for a write in flight: it is applied and acknowledged before the connection closes', async (t) => {
  const { socketPath, server, backend } = await gated(t);
  const c = await attached(socketPath, 'disk');
  backend.hold();
  c.request(C.NBD_CMD_WRITE, 8192, 4096, 0, 1n, Buffer.alloc(4096, 0x11));
  await backend.arrived(1);
  const closed = server.close();
  backend.release();
  t.same(await c.simpleReply(), { error: 0, handle: 1n });
  await closed;
  t.ok(backend.data.subarray(8192, 8192 + 4096).equals(Buffer.alloc(4096, 0x11)));
  t.ok(await c.closes());
});

t.test('a request that never finishes cannot hold the server\'s close beyond the grace period', async (t) => {
  const { socketPath, server, backend } = await gated(t, 200);
  const c = await attached(socketPath, 'disk');
  backend.hold();
  c.request(C.NBD_CMD_READ, 0, 4096, 0, 1n);
  await backend.arrived(1);
  await server.close();
  t.ok(await c.closes(), 'the client was disconnected');
  backend.release();
});

t.test('a client in the handshake when the server closes is answered NBD_REP_ERR_SHUTDOWN', async (t) => {
  const { socketPath, server } = await gated(t);
  const c = await RawClient.open(socketPath);
  await c.greet();
  const closed = server.close();
  c.option(C.NBD_OPT_LIST);
  t.match(await c.reply(), { type: C.NBD_REP_ERR_SHUTDOWN });
  c.option(C.NBD_OPT_ABORT);
  t.match(await c.reply(), { type: C.NBD_REP_ACK });
  await closed;
  t.ok(await c.closes());
});
