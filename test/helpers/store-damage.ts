/** Damage done to a data dir's block store by hand, as bit rot or a careless operator would. */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** The hex SHA-256 of `b`: a block's digest, its file name in the store. */
export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Where the block of `digest` lives under `dataDir`. */
export function blockPath(dataDir: string, digest: string): string {
  return join(dataDir, 'blocks', digest.slice(0, 3), digest);
}

/** Flips the lowest bit of the byte at `offset` of `path`. */
export function flipByte(path: string, offset: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] ^= 0x01;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}
