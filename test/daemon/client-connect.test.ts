/**
 * Connecting to something that is not a working blocksnap daemon. A Unix socket accepts from its
 * listen backlog whether or not anyone serves it, so a stopped daemon or another program's socket
 * gets as far as hello: the answer to hello has a deadline too, and whatever comes back before
 * it is answered says that no daemon speaks there, naming the NBD socket when that is what it is.
 */
import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { BlocksnapError } from '../../src/errors';
import { BIN, ensureBuilt, tempDir } from '../integration/fixtures/harness';

/** A listener that greets each connection with `greeting` (nothing: it never says a word). */
async function listener(t: Test, greeting: Buffer | null): Promise<string> {
  const path = join(tempDir(t), 'x.sock');
  const held: Socket[] = [];
  const server = createServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
    if (greeting !== null) s.write(greeting);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.teardown(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  return path;
}

async function connectError(socketPath: string, connectTimeoutMs?: number): Promise<BlocksnapError> {
  const err = await DaemonClient.connect({ socketPath, ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}) }).then(
    (c) => { c.close(); return null; }, (e: unknown) => e);
  if (!(err instanceof BlocksnapError)) throw new Error(`expected a BlocksnapError, got ${String(err)}`);
  return err;
}

/** The NBD server's first bytes: "NBDMAGIC", "IHAVEOPT", its handshake flags. */
const NBD_GREETING = Buffer.concat([Buffer.from('NBDMAGICIHAVEOPT'), Buffer.from([0, 3])]);

t.test('a socket that accepts but never answers hello fails within the connect timeout', async (t) => {
  const path = await listener(t, null);
  const err = await connectError(path, 300);
  t.equal(err.code, 'DaemonUnavailable');
  t.equal(err.message.startsWith(`connected to ${path} but no blocksnap daemon answered within 0.3 s`), true, err.message);
});

t.test('the NBD socket is named as such', async (t) => {
  const path = await listener(t, NBD_GREETING);
  const err = await connectError(path);
  t.equal(err.code, 'DaemonUnavailable');
  t.match(err.message, `${path} is an NBD socket (it sent the NBD greeting), not the daemon's control socket: pass the control socket with --socket`);
});

t.test('any other program\'s answer says it is not a blocksnap control socket', async (t) => {
  for (const greeting of [Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), Buffer.from([0, 0, 0, 2, 0x92, 0x01])]) {
    const path = await listener(t, greeting);
    const err = await connectError(path);
    t.equal(err.code, 'DaemonUnavailable');
    t.match(err.message, `${path} is not a blocksnap control socket: what it sent is not the blocksnap protocol (`);
  }
});

t.test('the CLI says so too, with exit status 1', async (t) => {
  ensureBuilt();
  const nbd = await listener(t, NBD_GREETING);
  const silent = await listener(t, null);
  // Not spawnSync: the listeners run in this process.
  const run = (socket: string): Promise<{ code: number | null; stderr: string }> => new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'disk', 'list', '--socket', socket]);
    let stderr = '';
    p.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.on('close', (code) => resolve({ code, stderr }));
  });
  const a = await run(nbd);
  t.equal(a.code, 1);
  t.match(a.stderr, /is an NBD socket .* \[DaemonUnavailable\]\n$/);
  const b = await run(silent);
  t.equal(b.code, 1);
  t.match(b.stderr, /but no blocksnap daemon answered within 5 s .* \[DaemonUnavailable\]\n$/);
});
