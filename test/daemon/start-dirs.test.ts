/** The data dir and the sockets' directories made at start (start-dirs.ts). */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { makeDataDir, makeSocketDir } from '../../src/daemon/start-dirs';

t.test('a data dir whose parents are missing is made private, its parents searchable by all', async (t) => {
  const dir = join(t.testdir(), 'a', 'b', 'data');
  makeDataDir(dir, undefined);
  t.equal(statSync(dir).mode & 0o777, 0o700 & ~process.umask(), 'the data dir');
  for (const d of [join(dir, '..'), join(dir, '..', '..')]) t.equal(statSync(d).mode & 0o777, 0o755 & ~process.umask(), d);
});

t.test('a data dir under /proc is refused at once, naming the parent that takes no directory', async (t) => {
  t.throws(() => makeDataDir('/proc/blocksnap-test/data', undefined),
    { code: 'InvalidArgument', message: /^cannot create the data directory \/proc\/blocksnap-test\/data \(--data-dir\): \/proc exists but takes no new directory/ });
});

t.test('a socket directory under /proc is refused at once, naming the option', async (t) => {
  t.throws(() => makeSocketDir('/proc/blocksnap-test/c.sock', undefined, '--nbd-socket'),
    { code: 'InvalidArgument', message: /^cannot create the socket directory \/proc\/blocksnap-test \(--nbd-socket\): \/proc exists but takes no new directory/ });
});

t.test('a data dir that exists is taken as it is', async (t) => {
  const dir = t.testdir();
  makeDataDir(dir, undefined);
  t.ok(statSync(dir).isDirectory());
});
