/**
 * Where a reader that found a stored block damaged or missing says so. Every read of a block file
 * checks it (invariant 6: header, length, SHA-256), and a reader that meets a flipped byte or no
 * file fails with DigestMismatch, BlockCorrupt or BlockMissing naming the digest and the file: rollback, clone, the qcow2
 * writer, NBD reads of a snapshot, a copy-on-write disk's base reads (and its volume's
 * background verifier, through the addon's onVerifyDamage), stream exports. Those
 * errors pass through one place on their way to the engine (fromNative for the addon's, the
 * throws in block-io.ts for TypeScript's), which reports them here; the engine of the store the
 * file belongs to records the digest in the catalog (catalog/damaged-blocks.ts), so that the next
 * snapshot or import that produces the block from good bytes writes it again (docs/design.md,
 * "Damaged blocks").
 *
 * A listener is keyed by its store directory and hears only of block files under it: a process
 * may run several engines (tests), and a digest means damage only in the store it was read from.
 * A missing block is reported too: a scan never looks up a block equal to the parent's, so without
 * the mark every new snapshot of the disk would reference the missing file again.
 */
import { BlocksnapError } from '../errors';
import { blockPath } from './format';

export type DamageCode = 'DigestMismatch' | 'BlockCorrupt' | 'BlockMissing';

export type DamageListener = (digestHex: string, code: DamageCode) => void;

const listeners = new Map<string, DamageListener>();
const DIGEST_HEX = /^[0-9a-f]{64}$/;

/** Hears of damage found in block files under `storeDir` until the returned function is called. */
export function watchStoreDamage(storeDir: string, listener: DamageListener): () => void {
  listeners.set(storeDir, listener);
  return () => {
    if (listeners.get(storeDir) === listener) listeners.delete(storeDir);
  };
}

/**
 * Reports `err` when it is damage found in a store's block file (DigestMismatch, BlockCorrupt or
 * BlockMissing with the digest and the file's path in its details); anything else is ignored.
 * Never throws.
 */
export function reportStoreDamage(err: unknown): void {
  if (listeners.size === 0 || !(err instanceof BlocksnapError)) return;
  if (err.code !== 'DigestMismatch' && err.code !== 'BlockCorrupt' && err.code !== 'BlockMissing') return;
  const digest = err.details?.digest;
  const path = err.details?.path;
  if (typeof digest !== 'string' || !DIGEST_HEX.test(digest) || typeof path !== 'string') return;
  for (const [storeDir, listener] of listeners) {
    if (blockPath(storeDir, digest) !== path) continue;
    try {
      listener(digest, err.code);
    } catch {
      // Recording is best effort: the reader's own error is what the caller sees.
    }
  }
}
