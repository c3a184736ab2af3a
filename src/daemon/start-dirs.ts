/**
 * Creating the data dir and the sockets' directories at start, with a message that says which
 * directory failed and what to pass instead: a default derived from HOME or XDG_RUNTIME_DIR (a
 * daemon started by su, sudo or cron) fails with a bare "EACCES: mkdir '/run/user/1001'" otherwise.
 *
 * The data dir is created first and 0700: without a runtime dir, the socket's directory is the data
 * dir, and created as the socket's (0755) it would have left the catalog open to every user. Its
 * missing parents are made 0755 (durable-dirs.ts), as a socket kept beside it must be reachable.
 */
import { dirname } from 'node:path';
import { BlocksnapError, type ErrorCode } from '../errors';
import { checkDataDir } from '../engine/paths';
import { makeDirs, makeDirsDurably } from '../durable-dirs';
import type { DefaultPath } from './paths';

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
}

/** 0755 where missing, so that a --socket-group can reach the socket. */
export function makeSocketDir(socketPath: string, given: DefaultPath | undefined, option: '--socket' | '--nbd-socket'): void {
  const dir = dirname(socketPath);
  create(dir, () => makeDirs(dir, 0o755), 'socket directory', given, option);
}
