/**
 * A data dir that exists but that the daemon's user may not read and write is refused at start
 * with a message that names the data dir, its owner and mode, and what to change, rather than the
 * bare errno of whichever file the start happened to touch first.
 */
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { asUserSkip, runDaemonAs, scratch, USER_A } from '../helpers/as-user';

const skip = asUserSkip();

/** The refusal; under the test runner a line of its coverage hook may follow. */
function firstLine(stderr: string): string {
  return stderr.split('\n')[0]!;
}

t.test('a data dir root made private is refused for another user, naming its owner', { skip }, async (t) => {
  const { dir, home, images } = scratch(t);
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  const r = runDaemonAs(USER_A, ['--data-dir', data, '--socket', join(home, 'd.sock'), '--image-root', images], {}, home);
  t.equal(r.status, 1);
  t.equal(firstLine(r.stderr), `blocksnap daemon: the data directory ${data} (--data-dir) is not readable and writable by the daemon's user (uid ${USER_A.uid}): ` +
    `it is owned by user root (uid 0), mode 0700. Run the daemon as that user, chown -R it to the daemon's user, or pass another --data-dir [PermissionDenied]`);
});

t.test('a data dir of the daemon\'s user without write permission is refused, naming the chmod', { skip }, async (t) => {
  const { home, images } = scratch(t);
  const data = join(home, 'data');
  mkdirSync(data);
  chownSync(data, USER_A.uid, USER_A.gid);
  chmodSync(data, 0o500);
  const r = runDaemonAs(USER_A, ['--data-dir', data, '--socket', join(home, 'd.sock'), '--image-root', images], {}, home);
  t.equal(r.status, 1);
  t.equal(firstLine(r.stderr), `blocksnap daemon: the data directory ${data} (--data-dir) is not readable and writable by the daemon's user (uid ${USER_A.uid}): ` +
    `it is owned by uid ${USER_A.uid}, mode 0500. Give its owner read, write and search rights (chmod u+rwx), or pass another --data-dir [PermissionDenied]`);
});
