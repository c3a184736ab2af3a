/**
 * The socket's place in the filesystem. A Unix socket path outlives its daemon when the daemon
 * dies without cleaning up, so a path that exists is probed: if something accepts a connection a
 * daemon is alive there and we refuse to start; if the connection is refused the file is stale and
 * is removed. A path that exists but is not a socket is never removed: it is someone's file.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, fstatSync, openSync, readFileSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { daemonUser, describeUser } from './user-names';

/** Without --socket-group: only the daemon's user (and root) may connect. */
export const DEFAULT_SOCKET_MODE = 0o600;
/** With --socket-group: its members too. */
export const GROUP_SOCKET_MODE = 0o660;
const PROBE_TIMEOUT_MS = 1_000;

export type ProbeResult = 'live' | 'stale';

/** Connects once: 'live' if anything accepts, 'stale' if the kernel refuses (no listener). */
export function probeSocket(path: string): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      // A listener that does not even complete connect() is wedged, but it still owns the path.
      sock.destroy();
      resolve('live');
    }, PROBE_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve('live');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve('stale');
      else reject(new BlocksnapError(err.code === 'EACCES' ? 'PermissionDenied' : 'SocketInUse', `cannot probe socket ${path}: ${err.message}`));
    });
  });
}

/**
 * Makes `path` free for listen(): creates the parent directory (0755, so that group members can
 * reach the socket) and removes a stale socket. Returns whether a stale socket was removed.
 * A socket of another user that cannot be probed or removed (a sticky /tmp) is refused with its
 * owner named (`details.owner`): only that user, or another path, can resolve it.
 */
export async function claimSocketPath(path: string): Promise<{ removedStale: boolean }> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { removedStale: false };
    throw toBlocksnapError(err);
  }
  await refuseTaken(path, st);
  const foreign = st.uid !== process.geteuid!();
  try {
    await unlink(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { removedStale: true };
    if (!foreign || (code !== 'EPERM' && code !== 'EACCES')) throw toBlocksnapError(err);
    const sticky = stickyDir(dirname(path)) ? ` (${dirname(path)} is a sticky directory: only a file's owner may remove it there)` : '';
    throw new BlocksnapError('PermissionDenied',
      `${path} is a stale socket of ${describeUser(st.uid)} that ${daemonUser()} may not remove${sticky}: ${(err as Error).message}`,
      { path, owner: st.uid });
  }
  return { removedStale: true };
}

/**
 * Refuses a socket path that a live daemon or something other than a socket holds, as
 * claimSocketPath does, but creates and removes nothing: asked of every socket before the data dir
 * is made, so that a start refused for its socket leaves no data dir behind. What it cannot see
 * yet (a missing or unreadable directory) is left for claimSocketPath to report.
 */
export async function refuseTakenSocketPath(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  await refuseTaken(path, st);
}

/** Throws unless `st` (the lstat of `path`) is a socket no daemon listens on. */
async function refuseTaken(path: string, st: Stats): Promise<void> {
  if (!st.isSocket()) {
    const found = fileKind(path, st);
    throw new BlocksnapError('SocketInUse', `${path} is ${found}, not a socket; refusing to replace it`, { path, found });
  }
  const foreign = st.uid !== process.geteuid!();
  let probe: ProbeResult;
  try {
    probe = await probeSocket(path);
  } catch (err) {
    const e = toBlocksnapError(err);
    if (!foreign || e.code !== 'PermissionDenied') throw e;
    throw new BlocksnapError('PermissionDenied',
      `${path} is a socket of ${describeUser(st.uid)} that ${daemonUser()} may not connect to, so it cannot tell whether a daemon listens there (${e.message})`,
      { path, owner: st.uid });
  }
  if (probe === 'live') {
    throw new BlocksnapError('SocketInUse', `a daemon${foreign ? ` of ${describeUser(st.uid)}` : ''} is already listening on ${path}`, { path });
  }
}

function stickyDir(dir: string): boolean {
  try {
    return (statSync(dir).mode & 0o1000) !== 0;
  } catch {
    return false;
  }
}

/**
 * Refuses a --socket-group the daemon cannot give its sockets to, before anything is created:
 * only root may give a file to a group its owner is not in, and the chown would fail only once the
 * engine had opened and the socket was bound.
 */
export function checkSocketGroup(group: string, gid: number, socketPaths: string[]): void {
  if (process.geteuid!() === 0) return;
  if (process.getegid!() === gid || process.getgroups!().includes(gid)) return;
  throw new BlocksnapError('PermissionDenied',
    `cannot give the socket ${socketPaths.join(' and ')} to group ${group} (gid ${gid}): ${daemonUser()} is not a member of group ${group}, ` +
    'and only root may give a file to a group its owner is not in. Add the user to the group (it applies from the next login), or start the daemon without --socket-group',
    { group, gid });
}

/** What is at a path that should be a socket, for a refusal; a symlink is named only if `st` is lstat's. */
export function fileKind(path: string, st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) {
    try {
      return `a symbolic link to ${readlinkSync(path)}`;
    } catch {
      return 'a symbolic link';
    }
  }
  if (st.isFile()) return 'a regular file';
  if (st.isFIFO()) return 'a named pipe';
  return 'a device file';
}

/** Linux O_PATH: a descriptor that names an inode without opening it for I/O (works on sockets); libuv adds O_CLOEXEC. */
const O_PATH = 0o10000000;

/**
 * Sets the socket's mode and, when a group is configured, its group (who may talk to the daemon).
 * chmod/chown by name would follow a symlink swapped in for the socket after bind() and change
 * whatever it points to; so the socket is pinned with an O_PATH|O_NOFOLLOW descriptor, checked to
 * be a socket, and changed through /proc/self/fd, which names exactly that inode.
 */
export async function setSocketAccess(path: string, mode: number, gid: number | undefined): Promise<void> {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | constants.O_NOFOLLOW);
  } catch (err) {
    throw toBlocksnapError(err);
  }
  try {
    if (!fstatSync(fd).isSocket()) {
      throw new BlocksnapError('SocketInUse', `${path} was replaced by something that is not a socket while the daemon was starting`, { path });
    }
    const pinned = `/proc/self/fd/${fd}`;
    if (gid !== undefined) {
      try {
        chownSync(pinned, -1, gid);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EPERM') throw toBlocksnapError(err);
        throw new BlocksnapError('PermissionDenied', `cannot give the socket ${path} to gid ${gid}: ${daemonUser()} is not a member of that group (EPERM)`, { path, gid });
      }
    }
    chmodSync(pinned, mode);
  } finally {
    closeSync(fd);
  }
}

/** A group name or number to a gid, through NSS (getent) so LDAP/sssd groups work, else /etc/group. */
export function resolveGroup(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const fromLine = (line: string): number | undefined => {
    const fields = line.trim().split(':');
    return fields[0] === group && fields[2] !== undefined && /^\d+$/.test(fields[2]) ? Number(fields[2]) : undefined;
  };
  const getent = spawnSync('getent', ['group', group], { encoding: 'utf8' });
  if (getent.status === 0) {
    const gid = fromLine(getent.stdout);
    if (gid !== undefined) return gid;
  } else if (getent.error === undefined && getent.status === 2) {
    throw new BlocksnapError('InvalidArgument', `socket group ${JSON.stringify(group)} does not exist`);
  }
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const gid = fromLine(line);
      if (gid !== undefined) return gid;
    }
  } catch {
    // fall through to the error below
  }
  throw new BlocksnapError('InvalidArgument', `socket group ${JSON.stringify(group)} does not exist`);
}
