/**
 * Creating the data dir and the sockets' directories at start, with a message that says which
 * directory failed and what to pass instead: a default derived from HOME or XDG_RUNTIME_DIR (a
 * daemon started by su, sudo or cron) fails with a bare "EACCES: mkdir '/run/user/1001'" otherwise.
 *
 * The data dir is created first and 0700: without a runtime dir, the socket's directory is the data
 * dir, and created as the socket's (0755) it would have left the catalog open to every user.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { BlocksnapError, type ErrorCode } from '../errors';
import { checkDataDir } from '../engine/paths';
import type { DefaultPath } from './paths';

function codeOf(err: unknown): ErrorCode {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EACCES': case 'EPERM': case 'EROFS': return 'PermissionDenied';
    case 'ENOSPC': case 'EDQUOT': return 'NoSpace';
    case 'EIO': return 'IOError';
    default: return 'InvalidArgument';
  }
}

/**
 * mkdir -p, one level at a time. Node's recursive mkdir retries a directory for as long as it gets
 * ENOENT while its parent exists, which under /proc (a parent that exists but takes no new entry)
 * is forever, at full CPU. Here the second ENOENT is the answer.
 */
function makeDirs(dir: string, mode: number): void {
  try {
    mkdirSync(dir, { mode });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(dir).isDirectory()) return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
  }
  makeDirs(dirname(dir), mode);
  try {
    mkdirSync(dir, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(dir).isDirectory()) return; // made meanwhile by another
    if (code === 'ENOENT') {
      throw Object.assign(new Error(`${dirname(dir)} exists but takes no new directory (${(err as Error).message})`), { code: 'ENOENT' });
    }
    throw err;
  }
}

function create(dir: string, mode: number, what: string, given: DefaultPath | undefined, option: string): void {
  try {
    makeDirs(dir, mode);
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
  create(dataDir, 0o700, 'data directory', given, '--data-dir');
}

/** 0755 where missing, so that a --socket-group can reach the socket. */
export function makeSocketDir(socketPath: string, given: DefaultPath | undefined, option: '--socket' | '--nbd-socket'): void {
  create(dirname(socketPath), 0o755, 'socket directory', given, option);
}
