/**
 * The block store's filesystem side: `<data-dir>/blocks/`, one file per block named by digest
 * (format.ts). Writing blocks is the native scanner's job; this class owns the layout, the
 * sweeping of freed blocks and the listing gc needs. It holds no state besides the directory.
 */
import { mkdirSync } from 'node:fs';
import { readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCKS_DIR, FANOUT_HEX_CHARS, TMP_DIR, blockPath } from './format';

const DIGEST_HEX = /^[0-9a-f]{64}$/;
const FANOUT = new RegExp(`^[0-9a-f]{${FANOUT_HEX_CHARS}}$`);

export class BlockStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, BLOCKS_DIR);
    mkdirSync(join(this.dir, TMP_DIR), { recursive: true, mode: 0o700 });
  }

  pathOf(digest: Buffer): string {
    return blockPath(this.dir, digest.toString('hex'));
  }

  /** Unlinks one block file; a file already gone counts as removed (a sweep may be repeated after a crash). */
  async remove(digest: Buffer): Promise<boolean> {
    try {
      await unlink(this.pathOf(digest));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
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

  /** Removes leftovers of interrupted writes. Only safe while no snapshot is writing (StoreLock exclusive). */
  async removeTempFiles(): Promise<number> {
    const tmp = join(this.dir, TMP_DIR);
    const names = await readdir(tmp);
    for (const n of names) await rm(join(tmp, n), { force: true });
    return names.length;
  }
}
