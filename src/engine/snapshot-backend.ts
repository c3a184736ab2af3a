/**
 * A snapshot as an NBD backend: read-only, its content assembled from the block store by the
 * snapshot's view (one digest per block, ZERO as no digest). Every block leaves the store only
 * after its header and SHA-256 were checked (readBlockVerified, on the libuv thread pool), so a
 * damaged block is an EIO naming the digest, never wrong data.
 *
 * State: a small cache of the last few blocks read, keyed by digest and holding the read's
 * promise, so that a client reading a 4 MiB block in 64 KiB requests (qemu-img, nbdcopy)
 * costs one verified read, and concurrent requests for the same block share it. A failed read
 * is dropped from the cache so that a retry reads again. Memory: CACHE_BLOCKS finished blocks
 * plus the blocks of requests in flight (bounded by the connections' request limits).
 */
import { readBlockVerified } from '../native/read-block';
import { DIGEST_SIZE } from '../store/format';
import type { Extent, NbdBackend, ReadPiece } from '../nbd/backend';
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../nbd/constants';

const CACHE_BLOCKS = 8;

interface CacheEntry { promise: Promise<Buffer>; settled: boolean }

export class SnapshotBackend implements NbdBackend {
  readonly writable = false;
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly storeDir: string,
    private readonly blockSize: number,
    readonly size: number,
    /** The snapshot's view: ceil(size / blockSize) × 32 bytes, ZERO as 32 zero bytes. */
    private readonly view: Buffer,
  ) {}

  /** The block's digest in hex, or null for ZERO. */
  private digestAt(index: number): string | null {
    const d = this.view.subarray(index * DIGEST_SIZE, (index + 1) * DIGEST_SIZE);
    for (let i = 0; i < DIGEST_SIZE; i++) if (d[i] !== 0) return d.toString('hex');
    return null;
  }

  private block(hex: string, index: number): Promise<Buffer> {
    const hit = this.cache.get(hex);
    if (hit) {
      this.cache.delete(hex); // re-insert: Map order is the LRU order
      this.cache.set(hex, hit);
      return hit.promise;
    }
    const entry: CacheEntry = {
      settled: false,
      promise: readBlockVerified(this.storeDir, Buffer.from(hex, 'hex'), Math.min(this.blockSize, this.size - index * this.blockSize)),
    };
    entry.promise.then(() => { entry.settled = true; this.evict(); }, () => { if (this.cache.get(hex) === entry) this.cache.delete(hex); });
    this.cache.set(hex, entry);
    return entry.promise;
  }

  /**
   * Drops the least recently used settled blocks beyond CACHE_BLOCKS. Reads in flight are never
   * dropped: a later request for the same block must join the read, not start another (with
   * several clients each streaming its own range, evicting them made every block read twice).
   */
  private evict(): void {
    let settled = 0;
    for (const e of this.cache.values()) if (e.settled) settled++;
    for (const [hex, e] of this.cache) {
      if (settled <= CACHE_BLOCKS) break;
      if (!e.settled) continue;
      this.cache.delete(hex);
      settled--;
    }
  }

  async read(offset: number, length: number): Promise<ReadPiece[]> {
    const pieces: ReadPiece[] = [];
    const waits: Array<Promise<void>> = [];
    const holes = new Set<ReadPiece>();
    const end = offset + length;
    for (let at = offset; at < end;) {
      const index = Math.floor(at / this.blockSize);
      const start = index * this.blockSize;
      const stop = Math.min(end, start + this.blockSize);
      const hex = this.digestAt(index);
      if (hex === null) {
        // Runs of ZERO blocks merge into one hole; a data piece's bytes arrive later, so a hole is
        // recognised by being in `holes`, not by a missing `data`.
        const last = pieces[pieces.length - 1];
        if (last && holes.has(last)) last.length += stop - at;
        else {
          const hole = { offset: at, length: stop - at };
          holes.add(hole);
          pieces.push(hole);
        }
      } else {
        const piece: ReadPiece = { offset: at, length: stop - at };
        pieces.push(piece);
        const from = at - start;
        waits.push(this.block(hex, index).then((b) => {
          if (b.length < from + piece.length) throw new Error(`block ${hex} is shorter than block ${index} of the snapshot`);
          piece.data = b.subarray(from, from + piece.length);
        }));
      }
      at = stop;
    }
    await Promise.all(waits);
    return pieces;
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    const out: Extent[] = [];
    const end = offset + length;
    for (let at = offset; at < end;) {
      const index = Math.floor(at / this.blockSize);
      const stop = Math.min(end, (index + 1) * this.blockSize);
      out.push({ length: stop - at, flags: this.digestAt(index) === null ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0 });
      at = stop;
    }
    return out;
  }
}
