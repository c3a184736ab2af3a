/**
 * A set of SHA-256 digests held in one Buffer: open addressing, linear probing, 32 bytes a slot,
 * at most 3/4 full (about 43 to 85 bytes a digest as it grows). A Set of hex strings costs some
 * 100 bytes a digest, and a Map of per-digest records more: for the hundreds of millions of
 * distinct blocks a bucket can hold, that difference is whether the set fits in memory at all.
 *
 * The all-zero digest is the empty slot: maps use it for a hole (ZERO), never for a block, and
 * add refuses it. The digests are uniform, so their first 4 bytes are the hash.
 */
import { BlocksnapError } from '../errors';
import { DIGEST_SIZE, isZeroDigest } from './format';

const INITIAL_SLOTS = 1024;

export class DigestSet {
  private slots: Buffer;
  private mask: number;
  private count = 0;

  constructor() {
    this.slots = Buffer.alloc(INITIAL_SLOTS * DIGEST_SIZE);
    this.mask = INITIAL_SLOTS - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Adds the digest at `buf[offset..offset+32)`; false when it was there already. */
  add(buf: Buffer, offset = 0): boolean {
    if (isZeroDigest(buf, offset)) throw new BlocksnapError('Internal', 'the ZERO digest names a hole, not a block');
    const at = this.find(this.slots, this.mask, buf, offset);
    if (!isZeroDigest(this.slots, at)) return false;
    buf.copy(this.slots, at, offset, offset + DIGEST_SIZE);
    this.count++;
    if (this.count * 4 > (this.mask + 1) * 3) this.grow();
    return true;
  }

  has(buf: Buffer, offset = 0): boolean {
    if (isZeroDigest(buf, offset)) return false;
    return !isZeroDigest(this.slots, this.find(this.slots, this.mask, buf, offset));
  }

  /** The byte offset of the digest's slot in `slots`, or of the empty slot where it would go. */
  private find(slots: Buffer, mask: number, buf: Buffer, offset: number): number {
    for (let i = buf.readUInt32LE(offset) & mask; ; i = (i + 1) & mask) {
      const at = i * DIGEST_SIZE;
      if (isZeroDigest(slots, at) || slots.compare(buf, offset, offset + DIGEST_SIZE, at, at + DIGEST_SIZE) === 0) return at;
    }
  }

  private grow(): void {
    const old = this.slots;
    const slots = Buffer.alloc(old.length * 2);
    const mask = old.length * 2 / DIGEST_SIZE - 1;
    for (let at = 0; at < old.length; at += DIGEST_SIZE) {
      if (!isZeroDigest(old, at)) old.copy(slots, this.find(slots, mask, old, at), at, at + DIGEST_SIZE);
    }
    this.slots = slots;
    this.mask = mask;
  }
}
