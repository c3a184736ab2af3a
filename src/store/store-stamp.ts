/**
 * The store's stamp, `<data-dir>/catalog-stamp`: which catalog the blocks belong to (its
 * `storeId`) and how far that catalog had got (its `generation`, the count of its commits that
 * changed which blocks are referenced or freed) when the store last heard of it.
 *
 * The catalog holds the same two values (schema.ts). A catalog that is not the store's (another
 * data dir's), older than the store (restored from a backup) or new beside a store of blocks (a
 * lost catalog recreated) does not reference blocks the store holds for snapshots it never heard
 * of, so the engine holds back every deletion until the catalog is the store's again or the
 * operator accepts it (engine/catalog-pairing.ts).
 *
 * Written after the catalog's commit (temp file, fsync, rename, directory fsync): a crash between
 * the two leaves the catalog one generation ahead, which the next start takes as current. The
 * stamp is never written ahead of the catalog, so a catalog behind it is always an older copy.
 */
import { closeSync, constants, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BlocksnapError } from '../errors';
import { fsyncDirSync } from '../durable-dirs';

export const STAMP_FILE = 'catalog-stamp';
/** Where a new stamp is written before it is renamed over the old one. */
export const STAMP_TEMP_FILE = 'catalog-stamp.tmp';

export interface StoreStamp {
  storeId: string;
  generation: number;
}

/** The stamp of the data dir's store; null when it has none. */
export function readStamp(dataDir: string): StoreStamp | null {
  const path = join(dataDir, STAMP_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BlocksnapError('IOError', `cannot read the block store's stamp ${path}: ${(err as Error).message}`, { path });
  }
  try {
    const v = JSON.parse(text) as Partial<StoreStamp>;
    if (typeof v.storeId === 'string' && v.storeId !== '' && Number.isSafeInteger(v.generation) && v.generation! >= 0) {
      return { storeId: v.storeId, generation: v.generation! };
    }
  } catch {
    // told below, as any other content that is no stamp
  }
  // No catalog can be shown to be this store's: taken as a stamp no catalog has, so deletions wait.
  return { storeId: '(unreadable)', generation: Number.MAX_SAFE_INTEGER };
}

/** Replaces the stamp of the data dir's store durably. */
export function writeStamp(dataDir: string, stamp: StoreStamp): void {
  const temp = join(dataDir, STAMP_TEMP_FILE);
  const fd = openSync(temp, constants.O_CREAT | constants.O_TRUNC | constants.O_WRONLY, 0o600);
  try {
    writeSync(fd, `${JSON.stringify({ storeId: stamp.storeId, generation: stamp.generation })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, join(dataDir, STAMP_FILE));
  fsyncDirSync(dataDir);
}
