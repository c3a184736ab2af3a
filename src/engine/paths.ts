/**
 * Image roots: the daemon usually runs as root while its socket users do not, so every path a
 * client names is resolved (realpath: symlinks and '..' gone) and must lie inside a configured
 * root. New files are created in their directory opened without following any symlink and named
 * there by link(2) (partial-files.ts), so a symlink planted at the target, or swapped in for one
 * of its directories, between this check and the create cannot redirect the write. Files the daemon
 * reads itself for a client (a stream to import, an image's format and size when it is
 * registered) are opened the same way (openCheckedFile): by path, even with O_NOFOLLOW, a
 * directory swapped for a symlink after the check would have the daemon read, with its own
 * rights, a file the client may not.
 */
import { close, closeSync, fstat, fstatSync, lstatSync, read, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { promisify } from 'node:util';
import { BlocksnapError, errnoToCode, toBlocksnapError } from '../errors';
import { openImageDir, type FileIdentity } from '../native';
import { fencingDataDir } from './data-dir-fence';
import type { ReadableFile } from '../stream/byte-io';

export function resolveRoots(roots: string[]): string[] {
  return roots.map((r) => {
    if (!isAbsolute(r)) throw new BlocksnapError('InvalidArgument', `image root ${JSON.stringify(r)} must be an absolute path`);
    let real: string;
    try {
      real = realpathSync(r);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      const why = errno === 'ENOENT' ? 'does not exist' : errno === 'ENOTDIR' ? 'is not a directory' : (err as Error).message;
      throw new BlocksnapError('InvalidArgument', `image root ${r} ${why}`);
    }
    if (!statSync(real).isDirectory()) throw new BlocksnapError('InvalidArgument', `image root ${r} is not a directory`);
    // A root of / admits every file on the host (daemon/config.ts says why), however it was named.
    if (real === '/') throw new BlocksnapError('InvalidArgument', `image root ${r} is the whole filesystem (/): name the directory that holds the images`);
    return real;
  });
}

/**
 * The data directory may not exist yet (it is created), but what exists of it must be
 * directories: a file there would otherwise surface as EEXIST or ENOTDIR from mkdir.
 */
export function checkDataDir(dataDir: string): void {
  for (let p = dataDir; ; p = dirname(p)) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      if (p === dirname(p)) return;
      continue; // missing (or unreadable: creating it will say why)
    }
    if (isDir) return;
    throw new BlocksnapError('InvalidArgument',
      p === dataDir ? `data directory ${dataDir} is not a directory` : `data directory ${dataDir}: ${p} is not a directory`);
  }
}

export { fenceDataDirOf } from './data-dir-fence';

function under(real: string, dir: string): boolean {
  return real === dir || real.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** Whether the real path `real` lies inside a root and outside every data dir (data-dir-fence.ts). */
export function insideRoots(real: string, roots: string[]): boolean {
  return roots.some((r) => under(real, r)) && fencingDataDir(real) === undefined;
}

function requireAbsolute(p: unknown): string {
  if (typeof p !== 'string' || p.length === 0) throw new BlocksnapError('InvalidArgument', 'path must be a non-empty string');
  if (!isAbsolute(p)) throw new BlocksnapError('InvalidArgument', `path ${JSON.stringify(p)} must be absolute (the CLI resolves relative paths)`);
  if (p.includes('\0')) throw new BlocksnapError('InvalidArgument', 'path contains a NUL byte');
  return p;
}

/**
 * The refusal of a path that resolves (or whose longest existing part resolves) to `real`, not
 * inside the roots. One fixed answer for everything outside them, whether it exists, is a
 * directory or leads on through a symlink: any difference, or the real path it leads to, would
 * tell a client about places it may not look.
 */
function notAllowed(p: string, real: string, roots: string[]): BlocksnapError {
  if (roots.some((r) => under(real, r))) {
    const dataDir = fencingDataDir(real);
    if (dataDir !== undefined) {
      return new BlocksnapError('PathNotAllowed', `${p} is inside the daemon's data directory ${dataDir}, which holds its catalog and block store; no image may be read or written there`, { path: p });
    }
  }
  return new BlocksnapError('PathNotAllowed', `${p} is outside the image roots, itself or through a symbolic link on its way: ${roots.join(', ')}`, { path: p });
}

/** An existing image file inside a root; returns its real path. */
export function resolveExistingImage(p: unknown, roots: string[]): string {
  return resolveExistingFile(p, roots, 'image', (path) => new BlocksnapError('NotAnImage',
    `${path} is a block device, and blocksnap does not support block devices (LVM volumes, partitions, loop devices) yet: ` +
    'it takes raw and qcow2 image files only', { path }));
}

/**
 * An existing snapshot stream file inside a root; returns its real path. A device is refused: the
 * daemon opens only regular files, and a stream must end at its end record (StreamReader), which
 * a partition holding one rarely does. Standard input takes the stream's bytes copied off it, read
 * with the client's rights.
 */
export function resolveExistingStream(p: unknown, roots: string[]): string {
  return resolveExistingFile(p, roots, 'stream file', (path) => new BlocksnapError('NotAnImage',
    `${path} is a block device; a snapshot stream is imported from a regular file inside an image root or through ` +
    'standard input (blocksnap snapshot import -i - --disk DISK): copy the stream\'s bytes off the device into one of them', { path }));
}

function resolveExistingFile(p: unknown, roots: string[], noun: string, blockDevice: (path: string) => BlocksnapError): string {
  const path = requireAbsolute(p);
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    throw unresolved(path, path, `${noun} ${path}`, err, roots);
  }
  if (!insideRoots(real, roots)) throw notAllowed(path, real, roots);
  const st = lstatSync(real);
  if (st.isBlockDevice()) throw blockDevice(path);
  if (!st.isFile()) throw new BlocksnapError('NotAnImage', `${path} is not a regular file`, { path });
  return real;
}

/** A client's file open read-only; its owner closes it. */
export interface CheckedFile extends ReadableFile {
  readonly fd: number;
  close(): Promise<void>;
}

/**
 * Opens `real` (what resolveExistingImage returned) for reading without following a symlink in
 * any component, and only if it is a regular file, without blocking on a FIFO: the path was
 * checked earlier, and whoever can write inside a root can change what it leads to since.
 * NotAnImage when it now leads through a symlink or to something else than a regular file,
 * ImageNotFound when it is gone; `path`, as the client gave it, is for messages. With `expected`,
 * the file whose rights were decided for a client (UserAccess), the file opened must be it
 * (ImageReplaced otherwise), before anything is read.
 */
export function openCheckedFile(real: string, path: string = real, expected?: FileIdentity): CheckedFile {
  let fd: number;
  try {
    const dir = openImageDir(dirname(real));
    try {
      fd = dir.openFile(basename(real));
    } finally {
      dir.release();
    }
  } catch (err) {
    const e = toBlocksnapError(err);
    if (e.code === 'ImageNotFound') throw new BlocksnapError('ImageNotFound', `${path} was removed or moved after it was checked`, { path });
    throw e;
  }
  if (expected !== undefined) {
    const st = fstatSync(fd, { bigint: true });
    if (st.dev !== expected.dev || st.ino !== expected.ino) {
      closeSync(fd);
      throw replacedAfterCheck(path);
    }
  }
  return {
    fd,
    stat: async () => ({ size: (await promisify(fstat)(fd)).size }),
    read: async (buffer, offset, length, position) => ({ bytesRead: (await promisify(read)(fd, buffer, offset, length, position)).bytesRead }),
    close: () => promisify(close)(fd),
  };
}

/**
 * The refusal of a file, or a directory to create one in, that is no longer the one whose rights
 * were decided for the client (UserAccess): another was renamed over it, or over a directory on
 * its path, since. The words are the native layer's (require_identity in native/core/image_file.cc).
 */
export function replacedAfterCheck(path: string): BlocksnapError {
  return new BlocksnapError('ImageReplaced',
    `${path} is no longer the file whose rights were checked for this job (another file or directory was renamed over it since); refusing to open it`, { path });
}

/** A file to be created inside a root: its parent must exist; the file must not. Returns the real target path. */
export function resolveNewFile(p: unknown, roots: string[]): string {
  const path = requireAbsolute(p);
  const base = basename(path);
  if (base === '' || base === '.' || base === '..' || path.endsWith(sep)) {
    throw new BlocksnapError('InvalidArgument', `${path} does not name a file`);
  }
  let parentReal: string;
  try {
    parentReal = realpathSync(dirname(path));
  } catch (err) {
    throw unresolved(path, dirname(path), `directory ${dirname(path)}`, err, roots);
  }
  const target = join(parentReal, base);
  if (!insideRoots(target, roots)) throw notAllowed(path, target, roots);
  if (!statSync(parentReal).isDirectory()) {
    throw new BlocksnapError('ImageNotFound', `cannot create ${path}: ${dirname(path)} is not a directory`, { path });
  }
  try {
    lstatSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return target;
    throw pathError(path, path, err);
  }
  throw new BlocksnapError('FileExists', `${path} already exists; blocksnap never overwrites a file`, { path });
}

/**
 * Why `resolved` (the client's `path`, or its directory for a new file) could not be resolved
 * (`err`, from realpath). Decided first by where the resolution got to: anything not inside a
 * root is refused as notAllowed says, the same whatever stopped it, so that "does not exist",
 * "not a directory" or "permission denied" is only ever said of a place inside a root.
 */
function unresolved(path: string, resolved: string, what: string, err: unknown, roots: string[]): BlocksnapError {
  const reached = realPrefix(resolved);
  if (!insideRoots(reached.real, roots)) return notAllowed(path, reached.real, roots);
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === 'ELOOP' && reached.errno === 'ELOOP') {
    // Both walks gave up on links leading on inside the roots: a loop, not a race.
    return new BlocksnapError('PathNotAllowed', `${what} is a symlink loop (too many levels of symlinks); refused`, { path, symlinkLoop: true });
  }
  if (errno === 'EINVAL' || errno === 'ELOOP' || reached.errno === null) {
    // realpath saw a symlink and then readlink found none (or links kept leading on), or the
    // walk here found the whole path after realpath had not: the path is being swapped while it
    // is resolved, the race the root check exists for.
    return new BlocksnapError('PathNotAllowed', `${what} changed while it was being resolved (a symlink swapped in or out, or a symlink loop); refused`, { path });
  }
  if (errno === 'ENOENT') {
    return new BlocksnapError('ImageNotFound', `${what} does not exist`, { path });
  }
  if (errno === 'ENOTDIR') {
    return new BlocksnapError('ImageNotFound', reached.errno === 'ENOTDIR'
      ? `${path} does not exist: ${reached.real} is not a directory`
      : `${path} does not exist: part of it is not a directory`, { path });
  }
  return pathError(what, path, err);
}

/** How far a path resolves: the real path of its longest existing part, and the errno that stopped it (null: none did). */
export interface RealPrefix { real: string; errno: string | null }

/** Symlinks followed before giving up, as the kernel does (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Resolves `path` as realpath does, one component at a time, up to the first that cannot be:
 * where a missing file or directory would be, had it existed. A component that is not a
 * directory but has more after it stops there (ENOTDIR), its own real path the answer.
 */
export function realPrefix(path: string): RealPrefix {
  let todo = path.split(sep).filter((c) => c !== '' && c !== '.');
  let real: string = sep;
  let links = 0;
  while (todo.length > 0) {
    const [c, ...rest] = todo as [string, ...string[]];
    if (c === '..') {
      real = dirname(real);
      todo = rest;
      continue;
    }
    const next = join(real, c);
    let st;
    try {
      st = lstatSync(next);
    } catch (err) {
      return { real, errno: (err as NodeJS.ErrnoException).code ?? 'EIO' };
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return { real, errno: 'ELOOP' };
      let target: string;
      try {
        target = readlinkSync(next);
      } catch (err) {
        return { real, errno: (err as NodeJS.ErrnoException).code ?? 'EIO' };
      }
      if (isAbsolute(target)) real = sep;
      todo = [...target.split(sep).filter((t) => t !== '' && t !== '.'), ...rest];
      continue;
    }
    if (rest.length > 0 && !st.isDirectory()) return { real: next, errno: 'ENOTDIR' };
    real = next;
    todo = rest;
  }
  return { real, errno: null };
}

/** An errno met while resolving a client's path, worded for the path rather than the syscall. */
function pathError(what: string, path: string, err: unknown): BlocksnapError {
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === 'ENAMETOOLONG') {
    return new BlocksnapError('InvalidArgument', `${what}: the path is too long (a name over 255 bytes, or over 4096 bytes in all)`, { path });
  }
  if (errno === 'ELOOP') return new BlocksnapError('PathNotAllowed', `${what}: too many levels of symlinks (a symlink loop); refused`, { path });
  return new BlocksnapError(errnoToCode(errno), `${what}: ${(err as Error).message}`, { path });
}
