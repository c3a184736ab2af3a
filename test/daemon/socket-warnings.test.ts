/** Warnings at start about who the sockets' mode lets in (socket-warnings.ts). */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openSocketModeWarning, unreachableSocketWarning } from '../../src/daemon/socket-warnings';

const GROUP = { name: 'vmadmins', gid: 4242 };

/** `top/mid/run/d.sock` under a 0755 temp dir, each level with the mode given; /tmp above is 1777. */
function tree(t: Test, modes: { top: number; mid: number; run: number }): { top: string; mid: string; run: string; socket: string } {
  const base = mkdtempSync(join(tmpdir(), 'bss-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  chmodSync(base, 0o755);
  const top = join(base, 'top');
  const mid = join(top, 'mid');
  const run = join(mid, 'run');
  mkdirSync(run, { recursive: true });
  chmodSync(top, modes.top);
  chmodSync(mid, modes.mid);
  chmodSync(run, modes.run);
  return { top, mid, run, socket: join(run, 'd.sock') };
}

t.test('a mode that lets others write the socket is warned about, naming the consequence', async (t) => {
  t.equal(openSocketModeWarning(0o666, false),
    '--socket-mode 0666 lets every local user connect to the daemon: any of them may use it, and through it read and roll back every image in the roots with the daemon\'s rights; ' +
    'to admit some users only, give them a --socket-group and leave the mode at 0660');
  t.match(openSocketModeWarning(0o602, true), /^--socket-mode 0602 lets every local user connect to the daemon and to its NBD socket: /);
});

t.test('a mode that keeps others out is not warned about', async (t) => {
  for (const mode of [0o600, 0o660, 0o664, 0o604]) t.equal(openSocketModeWarning(mode, true), null, mode.toString(8));
});

t.test('a private directory above the socket\'s own is named as what keeps the group out', async (t) => {
  const d = tree(t, { top: 0o755, mid: 0o700, run: 0o755 });
  t.equal(unreachableSocketWarning(d.socket, 0o660, GROUP),
    `members of group vmadmins cannot reach the socket ${d.socket}: the directory ${d.mid} (mode 0700) above it does not let them search it; ` +
    'give them search permission there (chmod o+x, or g+x for a directory of their group) or choose a socket path elsewhere');
});

t.test('every directory that keeps the group out is named, outermost first', async (t) => {
  const d = tree(t, { top: 0o750, mid: 0o755, run: 0o700 });
  t.match(unreachableSocketWarning(d.socket, 0o660, GROUP), `the directories ${d.top} (mode 0750), ${d.run} (mode 0700) above it do not let them search them;`);
});

t.test('a directory of the socket\'s group that lets its group search is no obstacle', async (t) => {
  const d = tree(t, { top: 0o755, mid: 0o750, run: 0o755 });
  chownSync(d.mid, 0, GROUP.gid);
  t.equal(unreachableSocketWarning(d.socket, 0o660, GROUP), null);
});

t.test('a directory of another group is searched by the group\'s members with its others bits', async (t) => {
  const d = tree(t, { top: 0o755, mid: 0o770, run: 0o755 });
  chownSync(d.mid, 0, GROUP.gid + 1);
  t.match(unreachableSocketWarning(d.socket, 0o660, GROUP), `the directory ${d.mid} (mode 0770) above it`);
});

t.test('without a group, a mode open to others is checked for their search permission', async (t) => {
  const d = tree(t, { top: 0o755, mid: 0o750, run: 0o755 });
  t.match(unreachableSocketWarning(d.socket, 0o666, undefined), new RegExp(`^other users cannot reach the socket ${d.socket}: the directory ${d.mid} \\(mode 0750\\)`));
});

t.test('a socket only the daemon\'s user may use has nothing to warn about', async (t) => {
  const d = tree(t, { top: 0o700, mid: 0o700, run: 0o700 });
  t.equal(unreachableSocketWarning(d.socket, 0o600, undefined), null, 'no group');
  t.equal(unreachableSocketWarning(d.socket, 0o600, GROUP), null, 'a group the mode does not let in');
});
