/**
 * Image roots: the daemon usually runs as root while its socket users do not, so every path a
 * client names is resolved (realpath: symlinks and '..' gone) and must lie inside a configured
 * root. New files are created by the native writer with O_EXCL|O_NOFOLLOW, so a symlink planted
 * at the target between this check and the create cannot redirect the write.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { BlocksnapError, errnoToCode } from '../errors';

export function resolveRoots(roots: string[]): string[] {
  return roots.map((r) => {
    if (!isAbsolute(r)) throw new BlocksnapError('InvalidArgument', `image root ${JSON.stringify(r)} must be an absolute path`);
    try {
      return realpathSync(r);
    } catch (err) {
      throw new BlocksnapError('InvalidArgument', `image root ${r}: ${(err as Error).message}`);
    }
  });
}

function insideRoots(real: string, roots: string[]): boolean {
  return roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep));
}

function requireAbsolute(p: unknown): string {
  if (typeof p !== 'string' || p.length === 0) throw new BlocksnapError('InvalidArgument', 'path must be a non-empty string');
  if (!isAbsolute(p)) throw new BlocksnapError('InvalidArgument', `path ${JSON.stringify(p)} must be absolute (the CLI resolves relative paths)`);
  if (p.includes('\0')) throw new BlocksnapError('InvalidArgument', 'path contains a NUL byte');
  return p;
}

function notAllowed(p: string, real: string, roots: string[]): BlocksnapError {
  const shown = real === p ? p : `${p} (resolves to ${real})`;
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
    throw new BlocksnapError(code, `image ${path}: ${(err as Error).message}`, { path });
  }
  if (!insideRoots(real, roots)) throw notAllowed(path, real, roots);
  const st = lstatSync(real);
  if (!st.isFile()) throw new BlocksnapError('NotAnImage', `${path} is not a regular file`, { path });
  return real;
}

/** A file to be created inside a root: its parent must exist; the file must not. Returns the real target path. */
export function resolveNewFile(p: unknown, roots: string[]): string {
  const path = requireAbsolute(p);
  const base = basename(path);
  if (base === '' || base === '.' || base === '..' || path.endsWith(sep)) {
    throw new BlocksnapError('InvalidArgument', `${path} does not name a file`);
  }
  const parentReal = realParentOrNull(path);
  if (parentReal === null) throw new BlocksnapError('ImageNotFound', `directory ${dirname(path)} does not exist`, { path });
  const target = join(parentReal, base);
  if (!insideRoots(target, roots)) throw notAllowed(path, target, roots);
  try {
    lstatSync(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return target;
    throw err;
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
