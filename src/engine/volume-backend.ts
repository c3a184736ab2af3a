/**
 * NBD backends over native Volumes (src/native/volume.ts).
 *
 * VolumeBackend: a copy-on-write disk, writable. Every request goes to the disk's shared Volume
 * through its IoGate, so that a snapshot's instant falls between two requests. The Volume keeps
 * the durability contract of src/nbd/backend.ts (a write is durable after a later flush, or at
 * once with FUA). TRIM is a write of zeros that may leave a hole: what a trimmed range reads is
 * unspecified by NBD, and zeros are the cheapest answer that stays the same across snapshots.
 *
 * SnapshotVolumeBackend: a snapshot, read-only, through a Volume with no layers (its own, closed
 * when the export stops). The Volume verifies each block once per open (header and SHA-256, on
 * the libuv pool) and then serves partial reads of it straight from the block file, so a 4 KiB
 * read costs a 4 KiB pread, not a whole verified block; a damaged block is an EIO naming the
 * digest, never wrong data. ZERO blocks never reach the Volume: they are holes in the reply.
 */
import type { BackendWrite, Extent, NbdBackend, ReadPiece } from '../nbd/backend';
import type { Volume } from '../native/volume';
import { DIGEST_SIZE } from '../store/format';
import type { OpenVolume } from './cow-volumes';

export class VolumeBackend implements NbdBackend {
  readonly writable = true;

  constructor(private readonly v: OpenVolume) {}

  /** The volume's: a rollback to a snapshot of another size gives the disk a volume of that size. */
  get size(): number {
    return this.v.volume.sizeBytes;
  }

  /** The volume reads zeros where nothing was written: one data piece. */
  layout(offset: number, length: number): ReadPiece[] {
    return [{ offset, length, zero: false }];
  }

  readInto(offset: number, length: number, target: Buffer, at: number): Promise<void> {
    return this.v.gate.run(() => this.v.volume.readInto(offset, length, target, at));
  }

  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    return this.v.gate.run(() => this.v.volume.extents(offset, length, max));
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.v.gate.run(() => this.v.volume.write(offset, data, fua));
  }

  /** One pass through the gate for all of `fn`'s writes: a snapshot's instant waits for the last. */
  writeAsOne<T>(fn: (write: BackendWrite) => Promise<T>): Promise<T> {
    return this.v.gate.run(() => fn((offset, data, fua) => this.v.volume.write(offset, data, fua)));
  }

  zero(offset: number, length: number, mayTrim: boolean, fua: boolean): Promise<void> {
    return this.v.gate.run(() => this.v.volume.zero(offset, length, mayTrim, fua));
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    return this.v.gate.run(() => this.v.volume.zero(offset, length, true, fua));
  }

  flush(): Promise<void> {
    return this.v.gate.run(() => this.v.volume.flush());
  }
}

export class SnapshotVolumeBackend implements NbdBackend {
  readonly writable = false;

  constructor(
    private readonly volume: Volume,
    private readonly blockSize: number,
    readonly size: number,
    /** The snapshot's view: ceil(size / blockSize) × 32 bytes, ZERO as 32 zero bytes. */
    private readonly view: Buffer,
  ) {}

  private isZero(index: number): boolean {
    for (let i = index * DIGEST_SIZE; i < (index + 1) * DIGEST_SIZE; i++) if (this.view[i] !== 0) return false;
    return true;
  }

  /** Runs of ZERO blocks become holes, runs of stored blocks data pieces. */
  layout(offset: number, length: number): ReadPiece[] {
    const pieces: ReadPiece[] = [];
    const end = offset + length;
    for (let at = offset; at < end;) {
      const zero = this.isZero(Math.floor(at / this.blockSize));
      let stop = Math.min(end, (Math.floor(at / this.blockSize) + 1) * this.blockSize);
      while (stop < end && this.isZero(Math.floor(stop / this.blockSize)) === zero) stop = Math.min(end, stop + this.blockSize);
      pieces.push({ offset: at, length: stop - at, zero });
      at = stop;
    }
    return pieces;
  }

  readInto(offset: number, length: number, target: Buffer, at: number): Promise<void> {
    return this.volume.readInto(offset, length, target, at);
  }

  extents(offset: number, length: number, max: number): Promise<Extent[]> {
    return this.volume.extents(offset, length, max);
  }

  close(): Promise<void> {
    return this.volume.close();
  }
}
