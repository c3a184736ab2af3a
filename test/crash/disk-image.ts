/**
 * The crash runs' disk images: what the test writes into them, and what it computes from them
 * independently of the daemon (a whole-image SHA-256, and the digests of the non-zero blocks a
 * store must hold for that content).
 *
 * Block contents come from a small pool, so the same block turns up in several disks and several
 * snapshots: deduplication, shared reference counts and freeing a block another snapshot still
 * holds are exercised on every round, not only when random data happens to repeat.
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { pattern } from '../helpers/images';
import type { Random } from '../helpers/random';

const POOL_SIZE = 40;

export class ImageWriter {
  private readonly pool: Buffer[] = [];

  /** `blocks`: the image size a resize stays around (5/8 to 5/4 of it). */
  constructor(readonly blockSize: number, readonly blocks = 32) {
    for (let k = 0; k < POOL_SIZE; k++) this.pool.push(pattern(`pool-${k}`, blockSize));
  }

  /** A new sparse image of `blocks` blocks, about half of them filled from the pool. */
  create(path: string, blocks: number, rng: Random): void {
    const fd = openSync(path, 'wx', 0o600);
    try {
      ftruncateSync(fd, blocks * this.blockSize);
      for (let i = 0; i < blocks; i++) if (rng.chance(0.5)) writeSync(fd, rng.pick(this.pool), 0, this.blockSize, i * this.blockSize);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * A guest's worth of change: pool blocks, zeroed blocks, a few unique bytes inside a block
   * (a block no other snapshot has), and now and then a resize that may leave a short last block.
   */
  mutate(path: string, rng: Random): string[] {
    const done: string[] = [];
    const fd = openSync(path, 'r+');
    try {
      for (let n = rng.int(1, 4); n > 0; n--) {
        const size = statSync(path).size;
        const blocks = Math.max(1, Math.ceil(size / this.blockSize));
        const index = rng.int(0, blocks - 1);
        const room = Math.min(this.blockSize, size - index * this.blockSize);
        const roll = rng.next();
        if (roll < 0.55) {
          writeSync(fd, rng.pick(this.pool), 0, room, index * this.blockSize);
          done.push(`pool@${index}`);
        } else if (roll < 0.75) {
          writeSync(fd, Buffer.alloc(room), 0, room, index * this.blockSize);
          done.push(`zero@${index}`);
        } else if (roll < 0.92) {
          const len = Math.min(room, 4096);
          writeSync(fd, rng.bytes(len), 0, len, index * this.blockSize + rng.int(0, room - len));
          done.push(`bytes@${index}`);
        } else {
          const newSize = rng.int(Math.round(this.blocks * 5 / 8), Math.round(this.blocks * 5 / 4)) * this.blockSize + (rng.chance(0.3) ? rng.int(1, this.blockSize - 1) : 0);
          ftruncateSync(fd, newSize);
          done.push(`resize:${newSize}`);
        }
      }
    } finally {
      closeSync(fd);
    }
    return done;
  }

  /** SHA-256 of the image content (holes read as zeros). */
  static contentSha(path: string): string {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  }

  /** Digest → raw length of every non-zero block of the file: what a store holding it must keep. */
  blockDigests(path: string, into: Map<string, number> = new Map()): Map<string, number> {
    const data = readFileSync(path);
    for (let off = 0; off < data.length; off += this.blockSize) {
      const block = data.subarray(off, Math.min(off + this.blockSize, data.length));
      if (isZero(block)) continue;
      into.set(createHash('sha256').update(block).digest('hex'), block.length);
    }
    return into;
  }
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
