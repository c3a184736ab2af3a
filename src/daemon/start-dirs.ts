/**
 * Creating the data dir and the sockets' directories at start, with a message that says which
 * directory failed and what to pass instead: a default derived from HOME or XDG_RUNTIME_DIR (a
 * daemon started by su, sudo or cron) fails with a bare "EACCES: mkdir '/run/user/1001'" otherwise.
 *
 * The data dir is created first and 0700: without a runtime dir, the socket's directory is the data
 * dir, and created as the socket's (0755) it would have left the catalog open to every user. Its
 * missing parents are made 0755 (durable-dirs.ts), as a socket kept beside it must be reachable.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { BlocksnapError, type ErrorCode } from '../errors';
import { checkDataDir } from '../engine/paths';
import { makeDirs, makeDirsDurably } from '../durable-dirs';
import type { DefaultPath } from './paths';
import { daemonUser, describeUser } from './user-names';

function codeOf(err: unknown): ErrorCode {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EACCES': case 'EPERM': case 'EROFS': return 'PermissionDenied';
    case 'ENOSPC': case 'EDQUOT': return 'NoSpace';
    case 'EIO': return 'IOError';
    default: return 'InvalidArgument';
  }
}

function create(dir: string, make: () => void, what: string, given: DefaultPath | undefined, option: string): void {
  try {
    make();
  } catch (err) {
    const message = (err as Error).message;
    throw new BlocksnapError(codeOf(err), given !== undefined
      ? `cannot create ${dir}, the default ${what} (${given.from}): ${message}; ${given.instead}`
      : `cannot create the ${what} ${dir} (${option}): ${message}`, { path: dir });
  }
}

/** `given`: where the path came from when it is a default. */
export function makeDataDir(dataDir: string, given: DefaultPath | undefined): void {
  checkDataDir(dataDir);
  // Durably: the catalog created in it next must not lose its directory to a power cut.
  create(dataDir, () => makeDirsDurably(dataDir, 0o700), 'data directory', given, '--data-dir');
  checkDataDirUsable(dataDir);
}

/**
 * A data dir that exists but that the daemon's user may not read or write (made by root, or by
 * another run as another user; a read-only mount) fails later at a scandir or at opening its lock
 * file, with a bare errno that names neither the data dir nor whose it is.
 */
function checkDataDirUsable(dataDir: string): void {
  try {
    accessSync(dataDir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') {
      throw new BlocksnapError('PermissionDenied', `the data directory ${dataDir} (--data-dir) is on a read-only filesystem: remount it read-write, or pass another --data-dir`, { path: dataDir });
    }
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    const st = statSync(dataDir);
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    const fix = st.uid === process.geteuid!()
      ? 'give its owner read, write and search rights (chmod u+rwx)'
      : 'run the daemon as that user, chown -R it to the daemon\'s user';
    throw new BlocksnapError('PermissionDenied',
      `the data directory ${dataDir} (--data-dir) is not readable and writable by ${daemonUser()}: it is owned by ${describeUser(st.uid)}, ` +
      `mode ${mode}. ${fix[0]!.toUpperCase()}${fix.slice(1)}, or pass another --data-dir`, { path: dataDir });
  }
}

/** 0755 where missing, so that a --socket-group can reach the socket. */
export function makeSocketDir(socketPath: string, given: DefaultPath | undefined, option: '--socket' | '--nbd-socket'): void {
  const dir = dirname(socketPath);
  create(dir, () => makeDirs(dir, 0o755), 'socket directory', given, option);
}
