/**
 * What a failed catalog write means. lmdb-js throws a plain Error whose `code` is the errno as a
 * number and whose message is strerror, sometimes followed by LMDB's own detail, e.g.
 * `No space left on device: Attempting to write page at position 86016, size 4096, …` (code 28).
 * A full filesystem shows up in two ways: ENOSPC when not one byte of a write fit, and a bare
 * `Input/output error` (code 5) when only part of a multi-page write fit: LMDB turns a short
 * write into EIO. So an EIO on a (nearly) full filesystem is taken for what it most likely is,
 * and only an EIO with space free is reported as an I/O error. A filesystem remounted read-only
 * (ext4 does that after an error) or a catalog file made immutable fails the same writes with
 * EROFS or EPERM: reported as I/O errors that say so, never as a bug.
 */
import { statfsSync } from 'node:fs';
import { constants } from 'node:os';
import { BlocksnapError } from '../errors';
import { formatBytes } from '../size-text';

export interface FsSpace { availableBytes: number; totalBytes: number }

export type CatalogErrno = 'ENOSPC' | 'EDQUOT' | 'EIO' | 'EROFS' | 'EPERM' | 'EACCES' | 'EFBIG';

const BY_NUMBER = new Map<number, CatalogErrno>([
  [constants.errno.ENOSPC, 'ENOSPC'],
  [constants.errno.EDQUOT, 'EDQUOT'],
  [constants.errno.EIO, 'EIO'],
  [constants.errno.EROFS, 'EROFS'],
  [constants.errno.EPERM, 'EPERM'],
  [constants.errno.EACCES, 'EACCES'],
  [constants.errno.EFBIG, 'EFBIG'],
]);

// strerror's text, for an error that lost its code on the way (the message is what LMDB keeps).
const BY_TEXT: Array<[RegExp, CatalogErrno]> = [
  [/^No space left on device\b/, 'ENOSPC'],
  [/^Disk quota exceeded\b/, 'EDQUOT'],
  [/^Input\/output error\b/, 'EIO'],
  [/^Read-only file system\b/, 'EROFS'],
  [/^Operation not permitted\b/, 'EPERM'],
  [/^Permission denied\b/, 'EACCES'],
  [/^File too large\b/, 'EFBIG'],
];

/** The errno of a storage failure as lmdb-js (or Node's fs) reports it, or null for anything else. */
export function storageErrno(err: unknown): CatalogErrno | null {
  if (!(err instanceof Error) || err instanceof BlocksnapError) return null;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'number') return BY_NUMBER.get(code) ?? null;
  if (typeof code === 'string') return [...BY_NUMBER.values()].find((e) => e === code) ?? null;
  if (code !== undefined) return null;
  for (const [re, errno] of BY_TEXT) if (re.test(err.message)) return errno;
  return null;
}

/**
 * Below this much free space an EIO from a catalog write is taken for a write that ran out of
 * space: a transaction can need megabytes, and by the time we look, the part of the write that
 * fit, or another writer, may have moved the figure a little either way.
 */
export function nearlyFullBytes(totalBytes: number): number {
  return Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, Math.floor(totalBytes / 20)));
}

/** What statfs(2) reports of a filesystem, as statfsSync gives it. */
export interface StatfsFigures { blocks: number; bfree: number; bavail: number; bsize: number }

/**
 * The space of a filesystem from its statfs figures, or null for one that keeps none: ramfs,
 * tmpfs mounted with size=0 and many FUSE filesystems report 0 blocks in all. Such a filesystem
 * is not full; it has no limit to check against. `asRoot` counts the blocks reserved for root.
 */
export function statfsSpace(s: StatfsFigures, asRoot = false): FsSpace | null {
  if (s.blocks === 0) return null;
  return { availableBytes: (asRoot ? s.bfree : s.bavail) * s.bsize, totalBytes: s.blocks * s.bsize };
}

/** The space of the filesystem of `dir`, or null when it cannot be read or is not kept (statfsSpace). */
export function fsSpace(dir: string): FsSpace | null {
  try {
    return statfsSpace(statfsSync(dir));
  } catch {
    return null;
  }
}

export interface CatalogWriteFailure {
  code: 'NoSpace' | 'IOError';
  errno: CatalogErrno;
  /** The first sentence of the message: what happened, without the advice. */
  what: string;
  details: Record<string, unknown>;
}

/**
 * Classifies an error from a catalog write; null when it is not a storage failure (an error the
 * transaction's own code threw, an LMDB error of another kind), which the caller rethrows as is.
 */
export function classifyCatalogWrite(err: unknown, dataDir: string, space: FsSpace | null): CatalogWriteFailure | null {
  const errno = storageErrno(err);
  if (errno === null) return null;
  // LMDB follows strerror with the page it was writing and buffer sizes that are not always
  // initialised: only strerror means anything to an operator.
  const lmdb = (err as Error).message.replace(/: Attempting to write page\b.*$/s, '');
  const details: Record<string, unknown> = { dataDir, errno, cause: lmdb, ...(space ? { availableBytes: space.availableBytes } : {}) };
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    const full = errno === 'ENOSPC' ? 'is full' : 'is over the disk quota of the daemon\'s user';
    return { code: 'NoSpace', errno, details, what: `the catalog could not be written: the filesystem of the data dir ${dataDir} ${full} (${errno})` };
  }
  if (errno === 'EROFS') {
    return {
      code: 'IOError', errno, details,
      what: `the catalog could not be written: the filesystem of the data dir ${dataDir} is read-only (EROFS); ` +
        'if it was remounted read-only after an error, check the kernel log and the filesystem, remount it read-write and restart the daemon',
    };
  }
  if (errno === 'EPERM' || errno === 'EACCES' || errno === 'EFBIG') {
    const why = errno === 'EFBIG' ? 'is over the largest file the daemon may write (ulimit -f)' : 'may not be written by the daemon';
    return {
      code: 'IOError', errno, details,
      what: `the catalog could not be written: its file in the data dir ${dataDir} ${why} (${errno}); ` +
        'check the owner, mode and attributes (lsattr) of the files there',
    };
  }
  if (space !== null && space.availableBytes < nearlyFullBytes(space.totalBytes)) {
    return {
      code: 'NoSpace', errno, details,
      what: `the catalog could not be written: the filesystem of the data dir ${dataDir} is full (${formatBytes(space.availableBytes)} free), ` +
        'and LMDB reports a write that only partly fit as an I/O error (EIO), so this is lack of space, most likely not a failing disk',
    };
  }
  const free = space === null ? 'its free space could not be read' : `it has ${formatBytes(space.availableBytes)} free, so this is not lack of space`;
  return {
    code: 'IOError', errno, details,
    what: `the catalog could not be written: I/O error (EIO) on the filesystem of the data dir ${dataDir} (${lmdb}); ${free}: check that disk (kernel log, SMART)`,
  };
}

export function catalogWriteError(f: CatalogWriteFailure, advice: string): BlocksnapError {
  return new BlocksnapError(f.code, advice === '' ? f.what : `${f.what}. ${advice}`, f.details);
}
