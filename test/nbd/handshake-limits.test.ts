/**
 * What one client can cost the server before it has picked an export: the replies it does not
 * read, the length of the messages it provokes, and the connection slots it occupies.
 */
import t from 'tap';
import * as C from '../../src/nbd/constants';
import { MemoryBackend } from './fixtures/memory-backend';
import { RawClient } from './fixtures/raw-client';
import { attached, settled, startServer } from './fixtures/serve';

const MiB = 1024 * 1024;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** NBD_OPT_INFO data: a name and the information requests. */
function infoData(name: Buffer, requests: number[] = []): Buffer {
  const d = Buffer.alloc(4 + name.length + 2 + 2 * requests.length);
  d.writeUInt32BE(name.length, 0);
  name.copy(d, 4);
  d.writeUInt16BE(requests.length, 4 + name.length);
  requests.forEach((r, i) => d.writeUInt16BE(r, 6 + name.length + 2 * i));
  return d;
}

function option(code: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(C.IHAVEOPT, 0);
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

t.test('a client that sends options without reading the replies stops being read: its replies do not pile up in the server', async (t) => {
  const { socketPath, server } = await startServer(t, { ro: new MemoryBackend(MiB, false) });
  const c = await RawClient.open(socketPath);
  await c.greet();
  c.socket.pause();
  // Each 26-byte option is answered with four replies, 110 bytes: 1 MiB sent asks for 4 MiB back.
  const one = option(C.NBD_OPT_INFO, infoData(Buffer.from('ro'), [C.NBD_INFO_NAME]));
  c.write(Buffer.concat(Array.from({ length: 40_000 }, () => one)));
  const unsent = await settled(() => server.unsentBytes);
  t.ok(unsent < 256 * 1024, `the server holds ${unsent} unsent bytes`);
  c.socket.resume();
  const all = await c.read(40_000 * 110, 60_000);
  t.equal(all.readUInt32BE(all.length - 20 + 12), C.NBD_REP_ACK, 'every option is answered once the client reads');
  c.close();
});

t.test('an error message quoting a 4096-byte name stays within the protocol\'s 4096-byte string limit', async (t) => {
  const { socketPath } = await startServer(t, { ro: new MemoryBackend(MiB, false) });
  const c = await RawClient.open(socketPath);
  await c.greet();
  c.option(C.NBD_OPT_INFO, infoData(Buffer.alloc(4096)));
  const r = await c.reply();
  t.equal(r.type, C.NBD_REP_ERR_UNKNOWN);
  t.ok(r.data.length <= C.NBD_MAX_STRING, `${r.data.length} bytes`);
  t.match(strictUtf8.decode(r.data), /^no export named "(\\u0000){256}"… \(4096 bytes\)$/);
  c.option(C.NBD_OPT_INFO, infoData(Buffer.from('é'.repeat(2048))));
  const multibyte = await c.reply();
  t.ok(multibyte.data.length <= C.NBD_MAX_STRING);
  t.doesNotThrow(() => strictUtf8.decode(multibyte.data), 'a name of two-byte characters is quoted as whole characters');
  c.option(C.NBD_OPT_ABORT);
  t.match(await c.reply(), { type: C.NBD_REP_ACK }, 'haggling goes on');
  c.close();
});

t.test('a connection that does not finish its handshake in time is closed', async (t) => {
  const { socketPath, server } = await startServer(t, { ro: new MemoryBackend(MiB, false) }, { handshakeTimeoutMs: 200 });
  const idle = await RawClient.open(socketPath);
  await idle.read(18);
  t.ok(await idle.closes(10_000), 'closed by the server');
  const late = await attached(socketPath, 'ro');
  t.equal(server.connectionCount, 1, 'a client that attached is not subject to the deadline');
  late.close();
});

t.test('idle sockets in the handshake cannot lock clients out: beyond the cap the oldest is closed', async (t) => {
  const { socketPath } = await startServer(t, { ro: new MemoryBackend(MiB, false) }, { maxHandshakes: 3 });
  const idle: RawClient[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await RawClient.open(socketPath);
    await c.read(18);
    idle.push(c);
  }
  const c = await attached(socketPath, 'ro');
  c.request(C.NBD_CMD_READ, 0, 512, 0, 7n);
  t.same(await c.simpleReply(), { error: 0, handle: 7n }, 'the new client is served');
  t.ok(await idle[0]!.closes(), 'the oldest idle socket was closed to make room');
  t.notOk(idle[2]!.closed, 'the newest idle one was not');
  for (const s of [...idle, c]) s.close();
});
