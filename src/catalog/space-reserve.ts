/**
 * Room for the catalog on a full filesystem: real blocks past the end of what LMDB uses in
 * `catalog.mdb`, so that LMDB can grow the file without the filesystem giving it a block.
 *
 * LMDB never overwrites a page the last commit uses: a transaction writes a copy of every page it
 * changes into pages that are free in the file, and appends when there are not enough. Deleting a
 * snapshot rewrites many pages (its map entries, reference counts, the free list, a child's map),
 * so on a full filesystem the one operation that frees space could not commit. LMDB reads and
 * writes only pages up to its last one (only a copy of the environment looks at the file size),
 * so bytes past them are free to hold: the file is lengthened with random bytes (a compressing
 * filesystem stores them in full; zeros could stay holes), and LMDB's next pages overwrite them.
 *
 * The room is two amounts, not two places: the reserve is for deletions only (used by any write,
 * a new snapshot's commit could take it and the operator would be stuck again), and the spare,
 * what the room holds beyond it, is for any change (recording a failed snapshot, a job).
 * Catalog.txn keeps other transactions out of the reserve. Since the blocks belong to
 * catalog.mdb, a snapshot storing blocks meanwhile cannot take them either (a separate file
 * released on demand could be).
 */
import { closeSync, constants, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';

const MiB = 1024 * 1024;
export const RESERVE_MIN_BYTES = 8 * MiB;
export const RESERVE_MAX_BYTES = 1024 * MiB;
const SPARE_MAX_BYTES = 2 * MiB;
const GRAIN = 64 * 1024;
const CHUNK = MiB;

function grains(n: number): number {
  return Math.max(0, n - (n % GRAIN));
}

/**
 * The reserve: as large as the catalog, within [8 MiB, 1 GiB] and at most 1/32 of the filesystem.
 * Deleting the oldest snapshot of a chain moves its map entries into its child and rewrites
 * about as many pages as the catalog has for that disk (measured: 85% of the catalog's size for
 * one disk of 262,144 blocks); deleting an incremental snapshot needs a small fraction of that.
 */
export function reserveTarget(catalogBytes: number, fsBytes: number): number {
  return grains(Math.min(RESERVE_MAX_BYTES, Math.max(RESERVE_MIN_BYTES, catalogBytes), Math.floor(fsBytes / 32)));
}

/** The spare: 2 MiB (hundreds of small transactions that find no free page), at most 1/64 of the filesystem. */
export function spareTarget(fsBytes: number): number {
  return grains(Math.min(SPARE_MAX_BYTES, Math.floor(fsBytes / 64)));
}

/**
 * Lengthens the file at `path` by `bytes` of random data (rounded up to 64 KiB), but only as far
 * as the filesystem keeps `keepFree` bytes free: lengthened after every commit while short, the
 * room must not fill the filesystem by itself. Returns the bytes added; on ENOSPC (another writer
 * was faster) it gives back what it wrote and returns 0. Call it only between transactions.
 */
export function lengthen(path: string, bytes: number, availableBytes: number, keepFree: number): number {
  const add = grains(Math.min(bytes + GRAIN - 1, availableBytes - keepFree));
  if (add === 0) return 0;
  const fd = openSync(path, constants.O_WRONLY);
  try {
    const from = fstatSync(fd).size;
    // One random chunk, written again and again: a compressing filesystem cannot shrink it either.
    const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, add)));
    let at = from;
    try {
      while (at < from + add) {
        const n = Math.min(chunk.length, from + add - at);
        at += writeSync(fd, chunk, 0, n, at);
      }
    } catch (err) {
      ftruncateSync(fd, from);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') return 0;
      throw err;
    }
    return at - from;
  } finally {
    closeSync(fd);
  }
}
