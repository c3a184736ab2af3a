/**
 * A daemon run by a user other than root, next to other users: its socket, data dir and catalog
 * are its own unless a socket group is chosen, and what stops it at start (a group it is not in, a
 * default path it cannot create, another user's stale socket) is said in words that name the fix.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { asUserSkip, connectAs, runDaemonAs, scratch, startedAs, staleSocketOf, USER_A, USER_B, USER_C } from '../helpers/as-user';

const skip = asUserSkip();

const mode = (p: string): string => (statSync(p).mode & 0o7777).toString(8).padStart(4, '0');

t.test('with default paths and no runtime dir, the socket, data dir and catalog are the daemon user\'s alone', { skip }, async (t) => {
  const { home, images } = scratch(t);
  await startedAs(t, USER_A, [], { HOME: home }, images, join(home, '.local/share/blocksnap/blocksnap.sock'));
  const data = join(home, '.local/share/blocksnap');
  t.equal(mode(data), '0700', 'the data dir, which holds the socket, is private');
  t.equal(mode(join(data, 'blocksnap.sock')), '0600', 'without --socket-group the socket is the user\'s only');
  t.equal(mode(join(data, 'catalog.mdb')), '0600', 'catalog.mdb is private');
  t.equal(mode(join(data, 'catalog.mdb-lock')), '0600', 'and so is its lock file');
  t.equal(connectAs(USER_A, join(data, 'blocksnap.sock')), 'connected', 'the daemon\'s user connects');
  t.equal(connectAs(USER_B, join(data, 'blocksnap.sock')), 'EACCES', 'another user of the same primary group cannot');
});

t.test('with --socket-group, its members may connect; a group the daemon is not in is refused before anything is created', { skip }, async (t) => {
  const { home, images } = scratch(t);
  const run = join(home, 'run');
  mkdirSync(run, { mode: 0o755 });
  chownSync(run, USER_A.uid, USER_A.gid);
  const socket = join(run, 'd.sock');
  const nbd = join(run, 'nbd.sock');
  const dataDir = join(home, 'data');

  const refused = runDaemonAs(USER_A, ['--data-dir', dataDir, '--socket', socket, '--nbd-socket', nbd, '--socket-group', String(USER_C.gid)], {}, images);
  t.equal(refused.status, 1, refused.stderr);
  t.match(refused.stderr, `cannot give the socket ${socket} and ${nbd} to group ${USER_C.gid} (gid ${USER_C.gid}): the daemon's user (uid ${USER_A.uid}) is not a member of group ${USER_C.gid}`);
  t.match(refused.stderr, /or start the daemon without --socket-group \[PermissionDenied\]/);
  t.notOk(existsSync(socket), 'no control socket is left behind');
  t.notOk(existsSync(nbd), 'no NBD socket is left behind');
  t.notOk(existsSync(dataDir), 'the engine never opened');

  await startedAs(t, USER_A, ['--data-dir', dataDir, '--socket', socket, '--socket-group', String(USER_A.gid)], {}, images, socket);
  t.equal(mode(socket), '0660', 'a chosen group gets the socket');
  t.equal(statSync(socket).gid, USER_A.gid);
  t.equal(connectAs(USER_B, socket), 'connected', 'a member of the group connects');
  t.equal(connectAs(USER_C, socket), 'EACCES', 'a user outside it cannot');
});

t.test('a socket group that cannot reach the socket in the private data dir is warned about', { skip }, async (t) => {
  const { home, images } = scratch(t);
  const socket = join(home, '.local/share/blocksnap/blocksnap.sock');
  const d = await startedAs(t, USER_A, ['--socket-group', String(USER_A.gid)], { HOME: home }, images, socket);
  t.equal(mode(socket), '0660', 'the socket is the group\'s');
  t.equal(connectAs(USER_B, socket), 'EACCES', 'but its members cannot reach it in the 0700 data dir');
  t.match(d.log(), `members of group ${USER_A.gid} cannot reach the socket ${socket}: the directory ${join(home, '.local/share/blocksnap')} (mode 0700) above it does not let them search it`);
});

t.test('a directory the start makes for both the data dir and the socket is left searchable, so the group connects', { skip }, async (t) => {
  const { home, images } = scratch(t);
  const shared = join(home, 'blocksnap');
  const socket = join(shared, 'run', 'd.sock');
  const d = await startedAs(t, USER_A, ['--data-dir', join(shared, 'data'), '--socket', socket, '--socket-group', String(USER_A.gid)], {}, images, socket);
  t.equal(mode(shared), (0o755 & ~process.umask()).toString(8).padStart(4, '0'), 'made as a parent of the data dir, not private as the data dir is');
  t.equal(mode(join(shared, 'data')), '0700', 'the data dir is');
  t.equal(connectAs(USER_B, socket), 'connected', 'a member of the group reaches the socket');
  t.notMatch(d.log(), 'cannot reach the socket', 'and nothing is warned about');
});

t.test('a default data or socket directory that cannot be created is named with its variable and the option to pass', { skip }, async (t) => {
  const { dir, home, images } = scratch(t);
  const rootOnly = join(dir, 'root-only'); // root's, 0755: USER_A may create nothing in it
  mkdirSync(rootOnly, { mode: 0o755 });

  const noHome = runDaemonAs(USER_A, [], { HOME: join(rootOnly, 'home') }, images);
  t.equal(noHome.status, 1, noHome.stderr);
  t.match(noHome.stderr, `cannot create ${join(rootOnly, 'home/.local/share/blocksnap')}, the default data directory (~/.local/share/blocksnap, HOME=${join(rootOnly, 'home')}): EACCES`);
  t.match(noHome.stderr, /pass --data-dir DIR, or set XDG_DATA_HOME .* \[PermissionDenied\]/);

  const noRuntime = runDaemonAs(USER_A, [], { HOME: home, XDG_RUNTIME_DIR: join(rootOnly, 'run') }, images);
  t.equal(noRuntime.status, 1, noRuntime.stderr);
  t.match(noRuntime.stderr, `cannot create ${join(rootOnly, 'run/blocksnap')}, the default socket directory ($XDG_RUNTIME_DIR/blocksnap, XDG_RUNTIME_DIR=${join(rootOnly, 'run')}): EACCES`);
  t.match(noRuntime.stderr, /pass --socket PATH, or unset XDG_RUNTIME_DIR .* \[PermissionDenied\]/);
});

t.test('another user\'s socket in a sticky directory is refused with its owner named', { skip }, async (t) => {
  const { dir, home, images } = scratch(t);
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  const stale = join(shared, 'stale.sock');
  const closed = join(shared, 'closed.sock');
  staleSocketOf(USER_C, stale, 0o777);
  staleSocketOf(USER_C, closed, 0o755);
  t.ok(statSync(stale).isSocket() && statSync(closed).isSocket(), 'the other user left two sockets');

  const r1 = runDaemonAs(USER_A, ['--data-dir', join(home, 'data'), '--socket', stale], {}, images);
  t.equal(r1.status, 1, r1.stderr);
  t.match(r1.stderr, `${stale} is a stale socket of uid ${USER_C.uid} that the daemon's user (uid ${USER_A.uid}) may not remove (${shared} is a sticky directory`);
  t.match(r1.stderr, /choose another path with --socket \[PermissionDenied\]/);

  const r2 = runDaemonAs(USER_A, ['--data-dir', join(home, 'data'), '--socket', closed], {}, images);
  t.equal(r2.status, 1, r2.stderr);
  t.match(r2.stderr, `${closed} is a socket of uid ${USER_C.uid} that the daemon's user (uid ${USER_A.uid}) may not connect to`);
  t.match(r2.stderr, /choose another path with --socket \[PermissionDenied\]/);
  t.ok(statSync(stale).isSocket() && statSync(closed).isSocket(), 'both are still there');
});
