import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { claimSocketPath, probeSocket, resolveGroup, setSocketAccess } from '../../src/daemon/socket-file';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bsnap-sock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a socket with a live listener is refused', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const server = createServer().listen(path);
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => server.close());
  t.equal(await probeSocket(path), 'live');
  await t.rejects(claimSocketPath(path), { code: 'SocketInUse', message: /already listening/ });
});

t.test('a socket left by a killed process is removed', async (t) => {
  const path = join(tempDir(t), 's.sock');
  spawnSync(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", path]);
  t.ok(existsSync(path), 'the dead process left its socket file');
  t.equal(await probeSocket(path), 'stale');
  t.same(await claimSocketPath(path), { removedStale: true });
  t.notOk(existsSync(path));
});

t.test('a regular file at the socket path is never removed', async (t) => {
  const path = join(tempDir(t), 'not-a-socket');
  writeFileSync(path, 'precious');
  await t.rejects(claimSocketPath(path), { code: 'SocketInUse', message: /not a socket/ });
  t.ok(existsSync(path));
});

t.test('the socket gets the configured mode', async (t) => {
  const path = join(tempDir(t), 's.sock');
  const server = createServer().listen(path);
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => server.close());
  await setSocketAccess(path, 0o660, undefined);
  t.equal(statSync(path).mode & 0o777, 0o660);
});

t.test('a symlink swapped in for the socket is refused and its target left alone', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 's.sock');
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'secret', { mode: 0o600 });
  const server = createServer().listen(path);
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => server.close());
  unlinkSync(path);
  symlinkSync(victim, path);
  await t.rejects(setSocketAccess(path, 0o666, undefined), { code: 'SocketInUse', message: /not a socket/ });
  t.equal(statSync(victim).mode & 0o777, 0o600, 'the symlink target keeps its mode');
});

t.test('missing parent directories are created', async (t) => {
  const path = join(tempDir(t), 'a', 'b', 's.sock');
  t.same(await claimSocketPath(path), { removedStale: false });
  t.ok(existsSync(join(path, '..')));
});

t.test('groups resolve by name and number', async (t) => {
  t.equal(resolveGroup('0'), 0);
  t.equal(resolveGroup('root'), 0);
  t.throws(() => resolveGroup('no-such-group-blocksnap'), { code: 'InvalidArgument' });
});
