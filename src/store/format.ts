/**
 * Frozen on-disk format of the block store. native/core/block_format.h holds the same constants;
 * test/store/format.test.ts asserts they agree. Changing anything here is a format version bump.
 *
 * Layout under <data-dir>/blocks/:
 *   <hex[0..3]>/<hex>   one file per stored block, named by the SHA-256 of its raw bytes
 *   tmp/                blocks being written (temp file, fsync, rename into place, fsync dir)
 *
 * Block file (little-endian):
 *   0   8  magic "BSNAPBLK"
 *   8   2  format version (1)
 *   10  2  flags (bits 0-3: compression algorithm, 0 = none; others reserved, must be 0)
 *   12  4  header size (64)
 *   16  8  payload length (bytes stored after the header)
 *   24  8  raw length (bytes of the block once decoded)
 *   32  32 SHA-256 of the raw bytes (the same digest as the file name)
 *   64  .. payload
 */
import { join } from 'node:path';

export const BLOCK_MAGIC = 'BSNAPBLK';
export const BLOCK_FORMAT_VERSION = 1;
export const BLOCK_HEADER_SIZE = 64;
export const BLOCK_FLAGS_COMPRESSION_MASK = 0x000f;
export const DIGEST_SIZE = 32;
export const DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024;
export const MIN_BLOCK_SIZE = 64 * 1024;
export const MAX_BLOCK_SIZE = 64 * 1024 * 1024;
export const FANOUT_HEX_CHARS = 3;
export const BLOCKS_DIR = 'blocks';
export const TMP_DIR = 'tmp';

/** A digest of 32 zero bytes stands for ZERO in digest arrays (SHA-256 never yields it in practice). */
export const ZERO_DIGEST = Buffer.alloc(DIGEST_SIZE);

export function blockRelPath(digestHex: string): string {
  return join(digestHex.slice(0, FANOUT_HEX_CHARS), digestHex);
}

export function blockPath(storeDir: string, digestHex: string): string {
  return join(storeDir, blockRelPath(digestHex));
}

export function isZeroDigest(buf: Buffer, offset = 0): boolean {
  for (let i = 0; i < DIGEST_SIZE; i++) if (buf[offset + i] !== 0) return false;
  return true;
}

export function isValidBlockSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0;
}
