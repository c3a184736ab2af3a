/**
 * The block store's filesystem side: `<data-dir>/blocks/`, one file per block named by digest
 * (format.ts). Writing blocks is the native scanner's job; this class owns the layout, the
 * sweeping of freed blocks and the listing gc needs. It holds no state besides the directories.
 *
 * Beside it, `<data-dir>/granules/` caches the per-64 KiB hash marks of stored blocks, which
 * copy-on-write volumes check small reads against (granule-format.ts); they are written natively,
 * by the scan that stores a block or by a volume that verified a block whole. A block's granule file goes
 * with the block, unlinked first, so an interrupted sweep never leaves one without its block.
 */
import { mkdirSync } from 'node:fs';
import { lstat, mkdir, readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCKS_DIR, FANOUT_HEX_CHARS, TMP_DIR, blockPath } from './format';
import { GRANULES_DIR, granulePath, granuleTmpDir } from './granule-format';

const DIGEST_HEX = /^[0-9a-f]{64}$/;
const FANOUT = new RegExp(`^[0-9a-f]{${FANOUT_HEX_CHARS}}$`);

export class BlockStore {
  readonly dir: string;
  /** `<data-dir>/granules`, created by the first granule file written. */
  readonly granuleDir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, BLOCKS_DIR);
    this.granuleDir = join(dataDir, GRANULES_DIR);
    mkdirSync(join(this.dir, TMP_DIR), { recursive: true, mode: 0o700 });
  }

  pathOf(digest: Buffer): string {
    return blockPath(this.dir, digest.toString('hex'));
  }

  /**
   * Unlinks one block file and, first, its granule file; a file already gone counts as removed (a
   * sweep may be repeated after a crash). True when the block file was there.
   */
  async remove(digest: Buffer): Promise<boolean> {
    const hex = digest.toString('hex');
    await unlinkIfPresent(granulePath(this.granuleDir, hex));
    return unlinkIfPresent(this.pathOf(digest));
  }

  /** Every block file present, as hex digests. Files that do not follow the naming are skipped. */
  async *list(): AsyncGenerator<string> {
    const fanouts = await readdir(this.dir);
    for (const f of fanouts.sort()) {
      if (!FANOUT.test(f)) continue;
      let names: string[];
      try {
        names = await readdir(join(this.dir, f));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const n of names) if (DIGEST_HEX.test(n) && n.startsWith(f)) yield n;
    }
  }

  /**
   * Removes leftovers of interrupted writes, of blocks and of granule files. Only safe while no
   * snapshot is writing (StoreLock exclusive); a granule file being written meanwhile is lost,
   * which costs its volume nothing (it is a cache).
   */
  async removeTempFiles(): Promise<number> {
    return (await emptyDir(join(this.dir, TMP_DIR))) + (await emptyDir(granuleTmpDir(this.granuleDir)));
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

/** Unlinks a file; true when it was there, false when it was already gone. */
export async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
