/**
 * A --socket that names something other than a socket (the daemon's data dir, the directory the
 * socket is in, an image) is a wrong path, not a daemon that is down: the CLI names what is there,
 * as a stale socket of a daemon that is gone still says that none is listening.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ensureBuilt, freshDaemon, runCli, tempDir } from '../integration/fixtures/harness';

t.test('a --socket naming a directory says it is a directory, not a socket', async (t) => {
  ensureBuilt();
  const dir = tempDir(t);
  const r = await runCli(['disk', 'list', '--socket', dir]);
  t.equal(r.code, 1);
  t.equal(r.stderr, `blocksnap: ${dir} is a directory, not a socket: pass the daemon's control socket (its --socket) with --socket or BLOCKSNAP_SOCKET [DaemonUnavailable]\n`);
});

t.test('a BLOCKSNAP_SOCKET naming a regular file says so in the --json error', async (t) => {
  ensureBuilt();
  const file = join(tempDir(t), 'vm1.raw');
  writeFileSync(file, 'not a socket');
  const r = await runCli(['disk', 'list', '--json'], { BLOCKSNAP_SOCKET: file });
  t.equal(r.code, 1);
  t.same(r.json(), { error: { code: 'DaemonUnavailable', message: `${file} is a regular file, not a socket: pass the daemon's control socket (its --socket) with --socket or BLOCKSNAP_SOCKET` } });
});

t.test('the socket of a daemon that stopped says no daemon is listening', async (t) => {
  const d = await freshDaemon(t);
  // SIGKILL: no clean stop, so the socket file stays behind with no one listening.
  t.equal(await d.stop('SIGKILL'), null);
  const r = await d.cli('disk', 'list');
  t.equal(r.code, 1);
  t.equal(r.stderr, `blocksnap: no blocksnap daemon is listening on ${d.socketPath} (start one with "blocksnap daemon", or pass --socket) [DaemonUnavailable]\n`);
});
