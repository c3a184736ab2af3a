/**
 * Public shapes of the engine: what the daemon serialises to clients. Field names are part of the
 * outside contract (`--json` output), so they only ever grow.
 */
import type { UnremovableEntry } from '../store/block-store';
import type { JobPhase } from '../native';
import type { SharedInstant } from './shared-instant';

export type { JobPhase };

export type ImageFormat = 'raw' | 'qcow2';
/** How a disk is stored: an image file, or a copy-on-write disk of blocksnap's own (clone --cow). */
export type DiskFormat = ImageFormat | 'cow';
export type SnapshotStatus = 'creating' | 'available' | 'error';
export type SnapshotType = 'manual' | 'auto';
/** offline: no QEMU process held write permission on the image during the scan; crash: one did,
 * so the snapshot is what a power cut would have left (crash-consistent);
 * point-in-time: taken by blocksnap between two writes of a copy-on-write disk it serves. */
export type SnapshotConsistency = 'crash' | 'offline' | 'point-in-time';

/** An unfinished rollback as a disk journals it: its target, its start and the job that began it. */
export interface RollbackJournal { snapshotId: string; startedAt: string; jobId: string }

export interface Disk {
  id: string;                 // d-<16 hex>
  name: string;
  path: string;               // realpath of the image; a COW disk: its overlay directory
  format: DiskFormat;
  sizeBytes: number;          // size at registration or at the last snapshot/rollback/relocate
  /**
   * The image's size now, read when asked: a raw file's length, a qcow2 header's virtual size, a
   * copy-on-write disk's size; null when the image cannot be read. It differs from sizeBytes
   * after the image was resized since, or after an abandoned rollback.
   */
  imageBytes: number | null;
  createdAt: string;          // ISO 8601
  headSnapshotId: string | null; // parent of the next snapshot (last snapshot or rollback target)
  snapshotCount: number;
  /**
   * Set while a rollback is journaled and not finished. `running` tells the two cases apart: the
   * job that wrote the journal still holds the disk (it ends the journal itself), or it stopped
   * (crash, failure, cancel) and the rollback must be rerun to complete or abandoned
   * (`rollback --abandon`).
   */
  pendingRollback: (RollbackJournal & { running: boolean }) | null;
  /** A copy-on-write disk's stack; null for an image file. */
  cow: CowInfo | null;
  /**
   * An image file's format: `given` at `disk add --format`, or `detected` from its first bytes
   * (a raw disk detected so is refused once its image starts with the qcow2 magic); null for a
   * copy-on-write disk.
   */
  formatSource: 'detected' | 'given' | null;
  /**
   * The path an image file was registered or relocated by when it differs from `path` (through a
   * symlink), else null: a snapshot or rollback is refused once it leads to another file.
   */
  givenPath: string | null;
  /**
   * The user who registered or last relocated an image disk, when it was neither root nor the
   * daemon's user: its jobs open the image and backing files only as far as that user could. Null
   * otherwise.
   */
  registeredBy: { uid: number } | null;
}

export interface CowInfo {
  originSnapshotId: string;   // the snapshot `clone --cow` was made from
  baseSnapshotId: string;     // the snapshot the overlays sit on (the latest snapshot or rollback target)
  overlayBytes: number;       // bytes allocated by the overlay layers' data files (TRIM and zeroes take none)
  writtenBytes: number | null; // bytes of the disk written since the base (map bits, TRIMs and zeroes included; an open volume's not yet flushed too); null: a layer map is unreadable
  layers: string[];           // overlay layer ids, bottom → top (the top takes writes)
}

export interface Snapshot {
  id: string;                 // s-<16 hex>
  diskId: string;
  name: string;
  description: string;
  status: SnapshotStatus;
  type: SnapshotType;
  parentId: string | null;
  createdAt: string;
  completedAt: string | null;
  sizeBytes: number;          // virtual size of the image at snapshot time
  blockSize: number;
  blockCount: number;
  logicalBytes: number;       // bytes of non-ZERO blocks (what a full copy would hold)
  changedBlocks: number;      // blocks whose digest differs from the parent's
  newBytes: number;           // bytes this snapshot added to the store (blocks no snapshot held before)
  uniqueBytes: number;        // bytes only this snapshot references: freed by deleting it
  error: { code: string; message: string } | null;
  /** null for snapshots recorded before this field existed. */
  consistency: SnapshotConsistency | null;
  /** What the scan found that the snapshot may not be what the operator meant; [] when nothing (and for snapshots recorded before it existed). */
  warnings: SnapshotWarning[];
  tags: Record<string, string>;
  groupId: string | null;     // g-<16 hex> when taken as a member of a snapshot group
  /** Live progress of the scan while status is `creating`, else null. */
  progress: SnapshotProgress | null;
}

/**
 * `ImageHeldReadOnly`: a QEMU process held the image open for reading only (consistent read, not
 * write) when the scan started or ended, as QEMU holds the backing file of a running VM's overlay:
 * that VM writes its overlay, which the snapshot does not hold.
 */
export interface SnapshotWarning { code: 'ImageHeldReadOnly'; message: string }

export interface SnapshotProgress {
  doneBytes: number;
  totalBytes: number;
  percent: number;            // 0-100, one decimal
  bytesPerSecond: number;     // average since the scan started
}

/** Every kind of job; help texts and docs name them from this list. */
export const JOB_KINDS = [
  'snapshot', 'rollback', 'clone', 'verify', 'gc',
  'replicate', 'restore', 'import', 'remote-gc', 'remote-verify', 'export', // off-host copies (offsite-types.ts)
  'flatten',
] as const;
export type JobKind = (typeof JOB_KINDS)[number];
export type JobState = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

export interface Job {
  id: string;                 // j-<16 hex>
  kind: JobKind;
  state: JobState;
  diskId: string | null;
  snapshotId: string | null;
  target: string | null;      // clone path
  doneBytes: number;
  totalBytes: number;
  /** What doneBytes/totalBytes count: bytes of image data, or blocks (verify, gc, remote-gc, remote-verify). */
  progressUnit: 'bytes' | 'blocks';
  /**
   * Which pass the job is in, for a job of two (absent for the others): a raw rollback is
   * 'comparing' until its first change to the image, then 'writing' (cancelled while 'comparing',
   * the image is as it was; while 'writing', it may be partly rolled back); a qcow2 rollback is
   * 'comparing' while it builds its new image beside the disk and 'writing' once that image
   * replaced the disk; a raw clone is 'writing' throughout. Kept once the job ends: the pass it
   * ended in.
   */
  phase?: JobPhase;
  startedAt: string;
  finishedAt: string | null;
  /**
   * When doneBytes/totalBytes were last written to the catalog (every PROGRESS_RECORD_MS while the
   * job runs): what a crash leaves of its progress. Absent before the first such write.
   */
  progressAt?: string;
  result: unknown;            // kind-specific, set when succeeded
  error: { code: string; message: string } | null;
}

export interface ChainSummary {
  diskId: string;
  diskName: string;
  snapshots: number;
  logicalBytes: number;       // sum of logicalBytes of the disk's available snapshots
  storedBytes: number;        // bytes of the distinct blocks the chain references
  storedBlocks: number;
}

export interface StoreStats {
  blocks: number;             // distinct referenced blocks
  bytes: number;              // their raw size
  pendingFreeBlocks: number;  // unreferenced, waiting for the sweeper
  /** Freed block files the last sweep could not unlink (first 100): they stay pending until removed by hand. */
  unremovable: UnremovableEntry[];
  blockSize: number;
  dataDir: string;
  /** Why deletions are held (the catalog is not known to be the store's), or null. */
  catalogHold?: { reason: string; message: string } | null;
}

/** A catalog backup written (`store backup-catalog`): the catalog's generation and id when copied. */
export interface CatalogBackup {
  path: string;
  bytes: number;
  generation: number;
  storeId: string | null;
}

/** What `store accept-catalog` did: nothing (`accepted: false`) when the catalog was the store's already. */
export interface CatalogAccepted {
  accepted: boolean;
  previousHold: string | null;
  storeId: string;
  generation: number;
}

export interface GcResult {
  removedBlocks: number;
  removedBytes: number;
  removedTempFiles: number;
  /** Fan-out directories under blocks/ found empty and removed (a failed snapshot leaves them). */
  removedEmptyDirs: number;
  keptBlocks: number;
  /** Of the removed: block files no delete had freed, left by a snapshot or import a crash cut off. */
  orphanBlocks: number;
  orphanBytes: number;
  /** Entries it could not remove or read (first 100 listed), to be removed by hand; the rest were reclaimed. */
  unremovableEntries: number;
  unremovable: UnremovableEntry[];
  /** Entries under blocks/ that are no block's (a directory under an unreferenced block's name included) (not touched), and the first 10 of them. */
  strayEntries: number;
  strayExamples: string[];
}

export interface VerifyResult {
  checkedBlocks: number;
  /**
   * Each damaged or missing block: the snapshots whose views reference it and their disks.
   * `repairable`: the next snapshot of a disk whose image holds the block's content (or an import
   * that carries it) writes it again (every reason but `io-error`).
   */
  problems: Array<{ digest: string; reason: string; message: string; snapshots: string[]; disks: string[]; repairable: boolean }>;
  /** Blocks listed as damaged once this run ended, each written again by the next snapshot or import that produces it. */
  awaitingRepair: number;
  /**
   * Block files no snapshot referenced and no delete had freed when listed: left by a crash, what
   * `store gc` reclaims (or a running snapshot commits).
   */
  unreferencedBlocks: number;
  /** Block files a delete freed that were still waiting for the sweep (or that it could not unlink). */
  pendingFreeBlocks: number;
  /** Entries under blocks/ that are no block's (a directory under an unreferenced block's name included), and the first 10 of them. */
  strayEntries: number;
  strayExamples: string[];
  /** Fan-out directories that could not be read: their blocks were neither listed nor counted. */
  unreadable: UnremovableEntry[];
  /** Why deletions are held (the catalog is not known to be the store's), or null. */
  catalogHold?: { reason: string; message: string } | null;
}

export interface CloneResult { path: string; sizeBytes: number; format: ImageFormat; snapshotId: string; bytesWritten: number; }

export interface FlattenResult { diskId: string; path: string; format: ImageFormat; sizeBytes: number; bytesWritten: number; }

export interface RollbackResult {
  diskId: string; snapshotId: string; sizeBytes: number;
  /** The disk's size as the rollback found it: an image resized since the snapshot takes the snapshot's size again. */
  previousSizeBytes: number;
  blocksWritten: number; bytesWritten: number; holesPunched: number; blocksUnchanged: number;
  /**
   * qcow2: a fresh image of the snapshot replaced the disk file; blocksWritten are the blocks
   * copied into it, blocksUnchanged its ZERO blocks and blocksFromBacking.
   */
  newImage: boolean;
  /**
   * raw (absent from results of earlier versions): ZERO targets that held data, zero-filled where
   * the filesystem cannot punch holes (ext2, many FUSE filesystems); holesPunched counts the others.
   */
  blocksZeroed?: number;
  /** qcow2 (absent from results of earlier versions): data blocks left unallocated, the backing chain holding the same there. */
  blocksFromBacking?: number;
  /** qcow2 (absent from results of earlier versions): clusters that read as zeros over the backing chain's data. */
  clustersZeroed?: number;
  /**
   * Copy-on-write disk (absent otherwise, and from results of earlier versions): its overlay was
   * dropped for a fresh one over the snapshot, nothing written. The bytes written since its base
   * that went with it, counted as `disk show` counts them (null: an unreadable layer map hid them).
   */
  discardedBytes?: number | null;
  /** Copy-on-write disk: the base those writes were made over (its last snapshot or rollback target, or the clone's source). */
  discardedSinceSnapshotId?: string;
}

/**
 * What the image of a disk holds once its unfinished rollback was abandoned (`rollback --abandon`):
 * partial: a raw image, rewritten in place up to where the rollback stopped (some blocks the
 *   snapshot's, the others as before);
 * unchanged: a qcow2 disk file that is still the one from before the rollback;
 * replaced: a qcow2 disk file that is no longer that one (the rollback's new image, holding the
 *   snapshot's content, was renamed over it, or someone else replaced it);
 * unknown: a qcow2 rollback journaled by a version that did not record the disk file: the old
 *   image, unless the new one had been renamed over it.
 */
export type AbandonedImage = 'partial' | 'unchanged' | 'replaced' | 'unknown';

export interface RollbackAbandoned {
  diskId: string;
  /** The journal that was cleared: the rollback that will not be finished. */
  abandoned: RollbackJournal;
  image: AbandonedImage;
  /** `image` in words, for the operator. */
  message: string;
}

export interface SnapshotCreateOptions {
  name?: string;
  description?: string;
  type?: SnapshotType;
  tags?: Record<string, string>;
  /** Set by snapshot groups for their members; such a snapshot is deleted only with its group. */
  groupId?: string;
  /** Set by snapshot groups for their copy-on-write members: the instant they all share. */
  instant?: SharedInstant;
  /**
   * For an automatic snapshot: called, before its job ends, with the ids of the automatic
   * snapshots the quota deleted once it was available (none when it did not become available).
   */
  quotaEvicted?: (snapshotIds: string[]) => void;
}

export interface JobEvents {
  /** Progress of a running job; called at most every ~250 ms. */
  onProgress?: (job: Job) => void;
}
