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
import { close, fstat, lstatSync, read, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { promisify } from 'node:util';
import { BlocksnapError, errnoToCode, toBlocksnapError } from '../errors';
import { openImageDir } from '../native';
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

/**
 * The real paths of the data directories open in this process. Whatever the roots say, nothing
 * in one is a client's to name: an image root that holds the data dir (the README's quick start
 * runs the daemon with both in one directory) would otherwise let a socket user register the
 * catalog or a block file as a disk and roll it back, or clone over the store.
 */
const dataDirs = new Set<string>();

/** Keeps clients out of `realDataDir` until the returned function is called. */
export function fenceDataDir(realDataDir: string): () => void {
  dataDirs.add(realDataDir);
  return () => { dataDirs.delete(realDataDir); };
}

/**
 * Fences the data dir and, where one of its entries is a symlink (a store moved to another disk:
 * `blocks -> /srv/big/blocks`), what that entry leads to as well, since the store follows it.
 */
export function fenceDataDirOf(dataDir: string): () => void {
  const real = realpathSync(dataDir);
  const unfences = [fenceDataDir(real)];
  for (const e of readdirSync(real, { withFileTypes: true })) {
    if (!e.isSymbolicLink()) continue;
    try {
      unfences.push(fenceDataDir(realpathSync(join(real, e.name))));
    } catch {
      // A dangling link leads nowhere a client could name.
    }
  }
  return () => { for (const u of unfences) u(); };
}

function under(real: string, dir: string): boolean {
  return real === dir || real.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function dataDirOf(real: string): string | undefined {
  for (const d of dataDirs) if (under(real, d)) return d;
  return undefined;
}

export function insideRoots(real: string, roots: string[]): boolean {
  return dataDirOf(real) === undefined && roots.some((r) => under(real, r));
}

function requireAbsolute(p: unknown): string {
  if (typeof p !== 'string' || p.length === 0) throw new BlocksnapError('InvalidArgument', 'path must be a non-empty string');
  if (!isAbsolute(p)) throw new BlocksnapError('InvalidArgument', `path ${JSON.stringify(p)} must be absolute (the CLI resolves relative paths)`);
  if (p.includes('\0')) throw new BlocksnapError('InvalidArgument', 'path contains a NUL byte');
  return p;
}

function notAllowed(p: string, real: string, roots: string[]): BlocksnapError {
  const shown = real === p ? p : `${p} (resolves to ${real})`;
  const dataDir = dataDirOf(real);
  if (dataDir !== undefined) {
    return new BlocksnapError('PathNotAllowed', `${shown} is inside the daemon's data directory ${dataDir}, which holds its catalog and block store; no image may be read or written there`, { path: p });
  }
  return new BlocksnapError('PathNotAllowed', `${shown} is outside the image roots: ${roots.join(', ')}`, { path: p });
}

/** An existing image file inside a root; returns its real path. */
export function resolveExistingImage(p: unknown, roots: string[]): string {
  const path = requireAbsolute(p);
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    const code = errnoToCode((err as NodeJS.ErrnoException).code);
    if (code === 'ImageNotFound') {
      // Say "not allowed" rather than "not found" for paths outside the roots: existence is information.
      const parentReal = realParentOrNull(path);
      if (parentReal !== null && !insideRoots(parentReal, roots)) throw notAllowed(path, parentReal, roots);
      throw new BlocksnapError('ImageNotFound', `image ${path} does not exist`, { path });
    }
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno === 'EINVAL' || errno === 'ELOOP') {
      // realpath saw a symlink and then readlink found none (or links kept leading on): the path
      // is being swapped while it is resolved, the race the root check exists for.
      throw new BlocksnapError('PathNotAllowed', `image ${path} changed while it was being resolved (a symlink swapped in or out, or a symlink loop); refused`, { path });
    }
    if (errno === 'ENOTDIR') throw notADirectoryOnTheWay(path, roots);
    throw pathError(`image ${path}`, path, err);
  }
  if (!insideRoots(real, roots)) throw notAllowed(path, real, roots);
  const st = lstatSync(real);
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
 * ImageNotFound when it is gone; `path`, as the client gave it, is for messages.
 */
export function openCheckedFile(real: string, path: string = real): CheckedFile {
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
  return {
    fd,
    stat: async () => ({ size: (await promisify(fstat)(fd)).size }),
    read: async (buffer, offset, length, position) => ({ bytesRead: (await promisify(read)(fd, buffer, offset, length, position)).bytesRead }),
    close: () => promisify(close)(fd),
  };
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
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno === 'ENOENT') throw new BlocksnapError('ImageNotFound', `directory ${dirname(path)} does not exist`, { path });
    if (errno === 'ENOTDIR') throw notADirectoryOnTheWay(path, roots);
    throw pathError(`directory ${dirname(path)}`, path, err);
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

function realParentOrNull(path: string): string | null {
  try {
    return realpathSync(dirname(path));
  } catch {
    return null;
  }
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

/**
 * ENOTDIR: some directory of the path is a file. Names it when it lies inside a root; outside
 * them, as for a missing file, existence is not reported.
 */
function notADirectoryOnTheWay(path: string, roots: string[]): BlocksnapError {
  for (let d = dirname(path); d !== dirname(d); d = dirname(d)) {
    let real: string;
    try {
      if (statSync(d).isDirectory()) break;
      real = realpathSync(d);
    } catch {
      continue;
    }
    if (!insideRoots(real, roots)) return notAllowed(path, real, roots);
    return new BlocksnapError('ImageNotFound', `${path} does not exist: ${d} is not a directory`, { path });
  }
  return new BlocksnapError('ImageNotFound', `${path} does not exist: part of it is not a directory`, { path });
}
