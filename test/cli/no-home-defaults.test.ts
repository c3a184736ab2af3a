/**
 * A uid with no account and no HOME (a container's arbitrary uid) has no default data dir or
 * socket. The CLI must still print its help, and say what to pass where a default is needed:
 * `os.homedir()` throws there, which once killed the CLI as it loaded.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { BIN } from '../integration/fixtures/harness';
import { asUserSkip, USER_C } from '../helpers/as-user';

const skip = asUserSkip();
// Through `env -i`: the test runner hands its children a coverage hook that writes into the
// checkout, which this uid may not, and which would then fail the exit.
const run = (args: string[]) => spawnSync('/usr/bin/env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, process.execPath, BIN, ...args],
  { ...USER_C, cwd: '/', encoding: 'utf8' });

t.test('help prints, saying there is no default socket', { skip }, async (t) => {
  const r = run(['--help']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /else none, as there is no home directory\)/);
});

t.test('a client command without --socket says there is no default and what to pass', { skip }, async (t) => {
  const r = run(['disk', 'list']);
  t.equal(r.status, 2);
  t.match(r.stderr, /^blocksnap: there is no default daemon socket: no home directory: HOME is not set and this uid has no entry in the user database; pass --socket PATH or set BLOCKSNAP_SOCKET \[InvalidArgument\]\n$/);
});

t.test('the daemon without --data-dir says the same of its data directory', { skip }, async (t) => {
  const r = run(['daemon', '--socket', '/nonexistent/s.sock', '--image-root', '/nonexistent']);
  t.equal(r.status, 2);
  t.match(r.stderr, /there is no default data directory: no home directory.*; pass --data-dir DIR/);
});
