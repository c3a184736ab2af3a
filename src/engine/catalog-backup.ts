/**
 * `store backup-catalog PATH`: a consistent copy of the running daemon's catalog, the one thing
 * without which the store's blocks are of no use (they hold no block maps). LMDB copies the
 * environment as one read transaction sees it (mdb_env_copy2), while the daemon goes on serving;
 * a copy of catalog.mdb by cp or rsync while it runs may tear across a commit. The copy holds
 * LMDB's data only (not the room kept past it, space-reserve.ts), made private like the catalog,
 * and never replaces a file: it is written in a private directory beside PATH and linked to it.
 */
import { chmodSync, closeSync, fsyncSync, linkSync, mkdtempSync, openSync, rmSync, statSync, constants } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { BlocksnapError } from '../errors';
import { fsyncDirSync } from '../durable-dirs';
import type { Catalog } from '../catalog/catalog';
import type { CatalogBackup } from './types';

export async function backupCatalog(catalog: Catalog, path: string): Promise<CatalogBackup> {
  const dir = dirname(path);
  const generation = catalog.identity().generation;
  let temp: string;
  try {
    temp = mkdtempSync(join(dir, `.${basename(path)}.`));
  } catch (err) {
    throw fileError(err, path);
  }
  try {
    const copy = join(temp, 'catalog.mdb');
    await catalog.copyTo(copy);
    chmodSync(copy, 0o600);
    const fd = openSync(copy, constants.O_RDONLY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(copy, path);
    } catch (err) {
      throw fileError(err, path);
    }
    fsyncDirSync(dir);
    return { path, bytes: statSync(path).size, generation, storeId: catalog.identity().storeId ?? null };
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}

function fileError(err: unknown, path: string): BlocksnapError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EEXIST') return new BlocksnapError('FileExists', `${path} exists already; a catalog backup never replaces a file: name a new one`, { path });
  if (code === 'ENOENT') return new BlocksnapError('InvalidArgument', `the directory of ${path} does not exist`, { path });
  if (code === 'EACCES' || code === 'EPERM') return new BlocksnapError('PermissionDenied', `cannot write ${path}: ${(err as Error).message}`, { path });
  if (code === 'ENOSPC') return new BlocksnapError('NoSpace', `no space for the catalog backup ${path}`, { path });
  return new BlocksnapError('IOError', `cannot write the catalog backup ${path}: ${(err as Error).message}`, { path, errno: code ?? null });
}
