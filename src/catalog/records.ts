import type { UserCredentials } from '../engine/user-access';
import type { DiskFormat, RollbackJournal, Snapshot, SnapshotConsistency, SnapshotWarning } from '../engine/types';

/** What the catalog stores for a disk; the public Disk adds derived fields. */
export interface DiskRecord {
  id: string;
  name: string;
  path: string;
  format: DiskFormat;
  sizeBytes: number;
  createdAt: string;
  headSnapshotId: string | null;
  pendingRollback: PendingRollbackRecord | null;
  /** Set for a copy-on-write disk (clone --cow); null for an image file (schema 2). */
  cow: CowRecord | null;
  /**
   * How an image file's format was chosen at `disk add`: `given` with --format, `detected` from
   * the file's first bytes. Only a detected raw disk is refused once its image starts with the
   * qcow2 magic (checkFormatKept). Absent for a copy-on-write disk, and in records written before
   * it was recorded, which read as `detected`, the default.
   */
  formatSource?: FormatSource;
  /**
   * The path an image disk was registered (or relocated) by, when it is not the image's real path
   * (a symlink): a job refuses the disk once this name leads to another file (checkDiskPath).
   * Absent when the two are the same, for a copy-on-write disk, and in records written before it
   * was recorded.
   */
  givenPath?: string;
  /**
   * The user who registered (or last relocated) an image disk when it was neither root nor the
   * daemon's user: every job that opens the image or its backing files checks them again with
   * these rights (registrant-access.ts). Absent for a disk root or the daemon's user registered
   * or relocated last, for a copy-on-write disk, and in records written before it was recorded.
   */
  registeredBy?: UserCredentials;
}

export type FormatSource = 'detected' | 'given';

/** A rollback's journal (docs/design.md, invariant 4); the public Disk shows it without `imageBefore`. */
export interface PendingRollbackRecord extends RollbackJournal {
  /**
   * The disk file as it was before the unfinished rollback began, for a qcow2 disk: a qcow2
   * rollback changes the disk only by renaming its new image over it, so while the disk's path
   * is still this file, the image was never touched and the journal can go. Absent in journals
   * of raw disks (written in place, the file stays the same) and in those written before it
   * was recorded, whose rollbacks must be rerun (or abandoned) as before.
   */
  imageBefore?: JournaledFile;
  /**
   * The name, in the disk's directory, a qcow2 rollback gives its new image once complete, until
   * it is renamed over the disk: random per attempt, so that nobody can put something there
   * first, and journaled so that what a crash leaves under it is found and removed. Absent in
   * raw disks' journals and in those written before the name was random
   * (`.<name>.blocksnap-rollback`).
   */
  tempName?: string;
  /**
   * For a raw disk: whether the unfinished rollback may have written to the image. False while
   * it only compares the image and checks the stored blocks it needs; set, and committed, before
   * its first write (or from the start, when an earlier attempt's journal says so: the image may
   * be partly rolled back already). A journal that says false is an image as it was: cleared at
   * the next start, and abandoned as `unchanged`. Absent in qcow2 journals and in raw journals
   * written before it was recorded, which count as possibly written.
   */
  writesBegun?: boolean;
}

/** A file by device and inode, and its birth time where the filesystem keeps one (an inode number can be reused). */
export interface JournaledFile { dev: string; ino: string; birthtimeNs: string | null }

/**
 * What a copy-on-write disk reads through: its overlay layers (bottom → top, the top takes
 * writes; files `<data-dir>/cow/<diskId>/<layerId>.data|.map`) over the view of baseSnapshotId.
 */
export interface CowRecord {
  /** The snapshot the disk was cloned from (kept for display; it may belong to another disk). */
  originSnapshotId: string;
  /** The snapshot whose view is under the layers: the origin, then the disk's latest snapshot or rollback target. */
  baseSnapshotId: string;
  layers: string[];
}

/**
 * What the catalog stores for a snapshot: Snapshot's fields but those derived on read (uniqueBytes
 * changes as the chain changes; progress is the running job's), the ones older records lack
 * (optional here, defaulted on read), and the job that made it.
 */
export interface SnapshotRecord extends Omit<Snapshot, 'uniqueBytes' | 'progress' | 'tags' | 'groupId' | 'consistency' | 'warnings'> {
  jobId: string | null;
  /** Absent in records written before tags existed: read as no tags. */
  tags?: Record<string, string>;
  /** Absent in records written before groups existed: read as no group. */
  groupId?: string | null;
  /** Absent in records written before it was recorded. */
  consistency?: SnapshotConsistency;
  /** Absent when there is none, and in records written before it was recorded. */
  warnings?: SnapshotWarning[];
}

export interface StoreTotals { blocks: number; bytes: number }
