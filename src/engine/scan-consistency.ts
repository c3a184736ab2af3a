/**
 * What a snapshot can say about the writers of the files its scan reads: the image and, for
 * qcow2, every backing file of the checked chain. Any of them may be written while the scan runs:
 * the VM writes its image, and a QEMU process may hold a backing file for writing too (qemu-nbd
 * serving it, a block-commit into it). So every file is probed for QEMU's write lock and stamped
 * (image-stamp.ts) before the scan, and again after it: held either time, or changed, and the
 * snapshot is `crash`-consistent (what a power cut would leave), else `offline`.
 *
 * The image itself held by QEMU for reading only, either time, is told as a warning
 * (ImageHeldReadOnly) whatever the consistency: that is how QEMU holds the backing file of a
 * running VM's overlay, so the VM writes elsewhere, and a snapshot of this file, however
 * consistent, misses its writes. That is what a libvirt external snapshot leaves behind a disk
 * registered by the old file. A read-only export or a qemu-img reading the image looks the same,
 * so it is a warning, not a refusal. A golden image under registered linked clones is held so
 * whenever one of them runs: the warning then names them, and points nowhere else, as the disk's
 * image is the right file.
 */
import { BlocksnapError } from '../errors';
import { probeImageLocks, type CheckedBacking, type ImageLocks } from '../native';
import { consistencyNow } from './image-access';
import { anyChangedSince, stampImages, type ImageStamp } from './image-stamp';
import type { SnapshotConsistency, SnapshotWarning } from './types';

export class ScanWatch {
  private readonly files: string[];
  private readonly before: SnapshotConsistency;
  private readonly stamps: ImageStamp[];
  private readonly readOnlyBefore: ImageLocks | null;

  /**
   * Taken just before the scan of `path` (a checked real path) and its `backingChain` starts;
   * `diskName` is for messages.
   */
  constructor(private readonly path: string, backingChain: readonly CheckedBacking[], private readonly diskName: string) {
    this.files = [path, ...backingChain.map((b) => b.realPath)];
    this.before = consistencyNow(this.files);
    this.readOnlyBefore = heldReadOnly(path);
    this.stamps = stampImages(this.files);
  }

  /**
   * What the snapshot is to carry besides its consistency, asked once the scan has read
   * everything. `dependents`: the names of the registered disks that are overlays over the image,
   * asked only when it was held.
   */
  warnings(dependents: () => string[]): SnapshotWarning[] {
    const locks = this.readOnlyBefore ?? heldReadOnly(this.path);
    if (locks === null) return [];
    const notShared = locks.notShared.length > 0 ? ` and does not share ${locks.notShared.join(', ')}` : '';
    const held = `a QEMU process had ${this.path} open for reading only (it holds ${locks.held.join(', ')}${notShared}), as QEMU holds the backing file ` +
      'of a running VM\'s overlay: that VM writes to its overlay, which this snapshot does not hold';
    const names = dependents();
    const message = names.length > 0
      ? `${held}. It is the backing file of registered disk${names.length > 1 ? 's' : ''} ${names.join(', ')}, whose own snapshots hold what their VMs write`
      : `${held}. If the disk's image is now that overlay (a libvirt external snapshot, a retargeted link), point the disk at it: ` +
        `blocksnap disk relocate ${this.diskName} PATH`;
    return [{ code: 'ImageHeldReadOnly', message }];
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

/** QEMU's locks on `path` when some process holds it but not for writing, else null. */
function heldReadOnly(path: string): ImageLocks | null {
  const locks = probeImageLocks(path);
  return locks.held.length > 0 && !locks.held.includes('write') ? locks : null;
}
