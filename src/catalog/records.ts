import type { Disk, ImageFormat, Snapshot, SnapshotConsistency, SnapshotStatus, SnapshotType } from '../engine/types';

/** What the catalog stores for a disk; the public Disk adds derived fields. */
export interface DiskRecord {
  id: string;
  name: string;
  path: string;
  format: ImageFormat;
  sizeBytes: number;
  createdAt: string;
  headSnapshotId: string | null;
  pendingRollback: Disk['pendingRollback'];
}

/** What the catalog stores for a snapshot; uniqueBytes is derived on read (it changes as the chain changes). */
export interface SnapshotRecord {
  id: string;
  diskId: string;
  name: string;
  description: string;
  status: SnapshotStatus;
  type: SnapshotType;
  parentId: string | null;
  createdAt: string;
  completedAt: string | null;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  logicalBytes: number;
  changedBlocks: number;
  newBytes: number;
  error: Snapshot['error'];
  jobId: string | null;
  /** Absent in records written before tags existed: read as no tags. */
  tags?: Record<string, string>;
  /** Absent in records written before groups existed: read as no group. */
  groupId?: string | null;
  /** Absent in records written before it was recorded. */
  consistency?: SnapshotConsistency;
}

export interface StoreTotals { blocks: number; bytes: number }
