/**
 * Creating directories whose names must survive a power cut: by POSIX a new entry is durable only
 * once its parent directory is fsynced (ext4 and XFS happen to commit it with the next fsync of
 * anything; btrfs's log tree and other filesystems need not). The native twin, for directories
 * made on a worker thread, is native/io/durable_dirs.cc; it makes only directories inside the data
 * dir, so it gives every level it makes the one private mode.
 */
import { closeSync, constants, fsyncSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/** fsync(2) of a directory: makes the names created or removed in it durable. */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Missing ancestors of a directory made here: search for all, as `mkdir -p` makes them under umask
 * 022. They are the operator's layout (/srv/blocksnap holding data/ and run/), not the daemon's
 * private space: made with the private directory's 0700, one would hide a socket kept beside it
 * from the socket's group. What is private is so by its own mode.
 */
export const ANCESTOR_MODE = 0o755;

/**
 * mkdir -p, one level at a time: `dir` with `mode`, its missing ancestors with ANCESTOR_MODE (both
 * less the umask); returns the levels it created, outermost first. Node's recursive
 * mkdir retries a directory for as long as it gets ENOENT while its parent exists, which under
 * /proc (a parent that exists but takes no new entry) is forever, at full CPU. Here the second
 * ENOENT is the answer.
 */
export function makeDirs(dir: string, mode: number): string[] {
  try {
    mkdirSync(dir, { mode });
    return [dir];
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(dir).isDirectory()) return [];
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
  }
  const created = makeDirs(dirname(dir), ANCESTOR_MODE);
  try {
    mkdirSync(dir, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && statSync(dir).isDirectory()) return created; // made meanwhile by another
    if (code === 'ENOENT') {
      throw Object.assign(new Error(`${dirname(dir)} exists but takes no new directory (${(err as Error).message})`), { code: 'ENOENT' });
    }
    throw err;
  }
  return [...created, dir];
}

/**
 * makeDirs, then the parent of each level it created fsynced, once each: for a directory that
 * something committed later will name. The deepest level that existed already has its parent
 * fsynced too: another job may have just made it and not yet synced its name (two COW clones
 * racing for `cow/`), and what this caller commits will name it as well.
 */
export function makeDirsDurably(dir: string, mode: number): void {
  const created = makeDirs(dir, mode);
  const existing = created.length > 0 ? dirname(created[0]!) : dir;
  for (const level of [existing, ...created]) fsyncDirSync(dirname(level));
}
