/** Real image files for tests: sparse raw images, block writes, content hashes. */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, statSync, writeSync, ftruncateSync, createReadStream } from 'node:fs';

export const MiB = 1024 * 1024;

/** Creates a sparse raw image of `size` bytes (all holes). */
export function makeImage(path: string, size: number): string {
  const fd = openSync(path, 'w', 0o600);
  ftruncateSync(fd, size);
  closeSync(fd);
  return path;
}

/** Writes `data` at `offset` without changing the rest of the image. */
export function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Fills block `index` with bytes derived from `seed` (deterministic, incompressible enough). */
export function fillBlock(path: string, index: number, blockSize: number, seed: string, length = blockSize): Buffer {
  const data = pattern(seed, length);
  writeAt(path, index * blockSize, data);
  return data;
}

export function pattern(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < length; off += block.length) {
    block.copy(out, off, 0, Math.min(block.length, length - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export function randomData(length: number): Buffer {
  return randomBytes(length);
}

export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const n = readSync(fd, b, 0, length, offset);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 of a whole file's content (holes read as zeros). */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Bytes actually allocated on disk. */
export function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}
