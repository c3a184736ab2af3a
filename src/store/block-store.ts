/**
 * The block store's filesystem side: `<data-dir>/blocks/`, one file per block named by digest
 * (format.ts). Writing blocks is the native scanner's job; this class owns the layout, the
 * removal of freed and unreferenced blocks and the listing gc and verify need. It holds no state besides the directories.
 *
 * Beside it, `<data-dir>/granules/` caches the per-64 KiB hash marks of stored blocks, which
 * copy-on-write volumes check small reads against (granule-format.ts); they are written natively,
 * by the scan that stores a block or by a volume that verified a block whole. A block's granule file goes
 * with the block, unlinked first, so an interrupted sweep never leaves one without its block.
 */
import { lstat, mkdir, readdir, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BlocksnapError } from '../errors';
import { makeDirsDurably } from '../durable-dirs';
import { fsyncDir } from './block-io';
import { BLOCKS_DIR, FANOUT_HEX_CHARS, TMP_DIR, blockPath } from './format';
import { GRANULES_DIR, granulePath, granuleTmpDir } from './granule-format';

const DIGEST_HEX = /^[0-9a-f]{64}$/;
const FANOUT = new RegExp(`^[0-9a-f]{${FANOUT_HEX_CHARS}}$`);

/** A store entry the daemon could not remove or read, and why, for the operator to deal with by hand. */
export interface UnremovableEntry { path: string; code: string; message: string; }

/** What `BlockStore.reclaim` did: `removed` when a block file was there and is gone; `unremovable` when it is still there. */
export interface Reclaimed { removed: boolean; unremovable?: UnremovableEntry; }

export type StoreEntry =
  | { kind: 'block'; hex: string }
  | { kind: 'stray'; path: string }
  | { kind: 'unreadable'; entry: UnremovableEntry };

export class BlockStore {
  readonly dir: string;
  /** `<data-dir>/granules`, created by the first granule file written. */
  readonly granuleDir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, BLOCKS_DIR);
    this.granuleDir = join(dataDir, GRANULES_DIR);
    // Durably: the snapshots committed later reference files under blocks/.
    makeDirsDurably(join(this.dir, TMP_DIR), 0o700);
  }

  pathOf(digest: Buffer): string {
    return blockPath(this.dir, digest.toString('hex'));
  }

  /**
   * Unlinks one block file and, first, its granule file; a file already gone counts as removed (a
   * sweep may be repeated after a crash), and an empty directory under the block's name is removed
   * too, as a repair does. What cannot go (a directory with entries, an immutable file, a
   * permission) is returned, not thrown: one such entry must not stop a sweep or gc of the others.
   */
  async reclaim(digest: Buffer): Promise<Reclaimed> {
    const granule = granulePath(this.granuleDir, digest.toString('hex'));
    try {
      await removeEntry(granule);
    } catch (err) {
      return { removed: false, unremovable: unremovableEntry(granule, err) };
    }
    const block = this.pathOf(digest);
    try {
      return { removed: await removeEntry(block) };
    } catch (err) {
      return { removed: false, unremovable: unremovableEntry(block, err) };
    }
  }

  /**
   * Every entry under `blocks/` but the temp directory: block files (by name; what the entry is,
   * a file or not, is the reader's or gc's to find), stray entries (names no block has: a file
   * in place of a fan-out directory, a name outside the naming), and fan-out directories that
   * cannot be read (their blocks are neither listed nor removable until the operator fixes them).
   */
  async *entries(): AsyncGenerator<StoreEntry> {
    let fanouts: string[];
    try {
      fanouts = await readdir(this.dir);
    } catch (err) {
      throw storeError(err, `cannot list the block store ${this.dir}`);
    }
    for (const f of fanouts.sort()) {
      if (f === TMP_DIR) continue;
      const dir = join(this.dir, f);
      if (!FANOUT.test(f)) { yield { kind: 'stray', path: dir }; continue; }
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code === 'ENOTDIR') { yield { kind: 'stray', path: dir }; continue; }
        yield { kind: 'unreadable', entry: unremovableEntry(dir, err) };
        continue;
      }
      for (const n of names) {
        if (DIGEST_HEX.test(n) && n.startsWith(f)) yield { kind: 'block', hex: n };
        else yield { kind: 'stray', path: join(dir, n) };
      }
    }
  }

  /**
   * Removes the fan-out directories left empty (by a snapshot that failed, or by gc itself) and
   * counts them: each holds an inode, and a store short of inodes would otherwise never get back
   * those a failed snapshot took. Only safe while no block is being stored (StoreLock
   * exclusive): a writer makes a fan-out directory before it renames a block into it. The store
   * directory is fsynced when any went, so that the count holds across a power cut.
   */
  async removeEmptyFanouts(): Promise<number> {
    let fanouts: string[];
    try {
      fanouts = await readdir(this.dir);
    } catch (err) {
      throw storeError(err, `cannot list the block store ${this.dir}`);
    }
    let removed = 0;
    for (const f of fanouts) {
      if (f === TMP_DIR || !FANOUT.test(f)) continue;
      try {
        await rmdir(join(this.dir, f));
        removed++;
      } catch (err) {
        // Not empty, not a directory (a stray, which gc reports), gone, or not ours to remove:
        // an empty directory kept costs one inode, and gc's other work must not stop for it.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR' && code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM') {
          throw storeError(err, `cannot remove the empty fan-out directory ${join(this.dir, f)}`);
        }
      }
    }
    if (removed > 0) await fsyncDir(this.dir);
    return removed;
  }

  /**
   * Removes leftovers of interrupted writes, of blocks and of granule files. Only safe while no
   * snapshot is writing (StoreLock exclusive); a granule file being written meanwhile is lost,
   * which costs its volume nothing (it is a cache).
   */
  async removeTempFiles(): Promise<number> {
    try {
      return (await emptyDir(join(this.dir, TMP_DIR))) + (await emptyDir(granuleTmpDir(this.granuleDir)));
    } catch (err) {
      throw storeError(err, 'cannot remove the temp files of the block store');
    }
  }
}

/**
 * Empties one of the store's own temp directories and counts what it removed. Everything in it is
 * a leftover, whatever its name or kind, but nothing outside it is ours: a temp directory that is
 * a symlink (or any other non-directory) is replaced by a real one, and its target is never
 * entered; a directory inside it is removed with its content, symlinks in it unlinked, not followed.
 */
async function emptyDir(dir: string): Promise<number> {
  let st;
  try {
    st = await lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  if (!st.isDirectory()) {
    await unlink(dir);
    await mkdir(dir, { mode: 0o700 });
    return 1;
  }
  const names = await readdir(dir);
  for (const n of names) await rm(join(dir, n), { force: true, recursive: true });
  return names.length;
}

/**
 * Unlinks a file, or removes an empty directory in its place; true when something was there.
 * A directory with entries throws ENOTEMPTY: what is in it may be the operator's.
 */
async function removeEntry(path: string): Promise<boolean> {
  try {
    return await unlinkIfPresent(path);
  } catch (err) {
    // unlink(2) of a directory is EISDIR on Linux, EPERM where POSIX allows it.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && !(code === 'EPERM' && (await isDirectory(path)))) throw err;
    await rmdir(path);
    return true;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

function unremovableEntry(path: string, err: unknown): UnremovableEntry {
  const e = err as NodeJS.ErrnoException;
  const code = typeof e.code === 'string' ? e.code : 'EIO';
  const why = code === 'ENOTEMPTY' || code === 'EEXIST' ? 'a directory with entries in it'
    : code === 'EPERM' ? 'not permitted (an immutable or append-only file, chattr -i undoes it)'
    : code === 'EACCES' ? 'permission denied (the daemon\'s user may not write its directory)'
    : e.message;
  return { path, code, message: `${why} (${code})` };
}

/**
 * An errno met on the store's own paths, with a code of its own: the generic mapping (errors.ts)
 * reads EISDIR and ENOTDIR as an image path that is not a file (NotAnImage), which here would send
 * the operator to their images instead of the data dir.
 */
function storeError(err: unknown, what: string): BlocksnapError {
  const e = err as NodeJS.ErrnoException;
  const code = e.code === 'EACCES' || e.code === 'EPERM' ? 'PermissionDenied' : e.code === 'ENOSPC' ? 'NoSpace' : 'IOError';
  return new BlocksnapError(code, `${what}: ${e.message}`, { path: e.path ?? null });
}

/** Unlinks a file; true when it was there, false when it was already gone. */
async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
