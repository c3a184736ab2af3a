/**
 * What a snapshot can say about the writers of the files its scan reads: the image and, for
 * qcow2, every backing file of the checked chain. Any of them may be written while the scan runs:
 * the VM writes its image, and a QEMU process may hold a backing file for writing too (qemu-nbd
 * serving it, a block-commit into it). So every file is probed for QEMU's write lock and stamped
 * (image-stamp.ts) before the scan, and again after it: held either time, or changed, and the
 * snapshot is `crash`-consistent (what a power cut would leave), else `offline`.
 */
import { BlocksnapError } from '../errors';
import type { CheckedBacking } from '../native';
import { consistencyNow } from './image-access';
import { anyChangedSince, stampImages, type ImageStamp } from './image-stamp';
import type { SnapshotConsistency } from './types';

export class ScanWatch {
  private readonly files: string[];
  private readonly before: SnapshotConsistency;
  private readonly stamps: ImageStamp[];

  /** Taken just before the scan of `path` (a checked real path) and its `backingChain` starts. */
  constructor(private readonly path: string, backingChain: readonly CheckedBacking[]) {
    this.files = [path, ...backingChain.map((b) => b.realPath)];
    this.before = consistencyNow(this.files);
    this.stamps = stampImages(this.files);
  }

  /** The snapshot's consistency, asked once the scan has read everything. */
  consistency(): SnapshotConsistency {
    return this.before === 'crash' || anyChangedSince(this.files, this.stamps) ? 'crash' : consistencyNow(this.files);
  }

  /**
   * A scan failure as it is to be told. The scan holds the L1 table it read at its start and reads
   * each L2 table as it goes: an image written meanwhile can move what they point to (an L2 table
   * freed and its cluster reused, a shrink), and what the scan then finds malformed says nothing
   * of the image at rest. ImageCorrupt of a chain that was written during the scan is therefore
   * ImageChanged, to take again, not a call for a repair that must never run on a VM's live image.
   */
  failure(e: BlocksnapError): BlocksnapError {
    if (e.code !== 'ImageCorrupt' || !this.written()) return e;
    const what = this.files.length > 1 ? `${this.path} or a backing file of it` : this.path;
    return new BlocksnapError('ImageChanged',
      `${what} was written while the snapshot read it, and the qcow2 tables the scan followed changed under it (${e.message}); ` +
      'take the snapshot again. Should this recur, check the image without changing it (qemu-img check -U); ' +
      'repair it (qemu-img check -r) only once no VM or other QEMU process has it open',
      e.details);
  }

  private written(): boolean {
    try {
      return this.consistency() === 'crash';
    } catch {
      return true; // a file that cannot be probed now was replaced or removed under the scan
    }
  }
}
