import type { Catalog } from '../catalog/catalog';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import type { BlockStore } from '../store/block-store';
import type { EngineLogger } from './engine';
import type { JobRunner } from './jobs';
import type { DiskLocks, StoreLock } from './locks';
import type { Snapshot } from './types';

/**
 * What the engine hands the off-host jobs (replication, streams) beyond its public API: they read
 * snapshot views and write blocks and snapshots like the engine's own jobs do, under the same
 * locks, pins and job runner. The daemon never sees this.
 */
export interface OffsiteInternals {
  readonly catalog: Catalog;
  readonly store: BlockStore;
  readonly storeLock: StoreLock;
  readonly diskLocks: DiskLocks;
  readonly jobs: JobRunner;
  readonly imageRoots: string[];
  readonly log: EngineLogger;
  assertOpen(): void;
  resolveDisk(ref: string): DiskRecord;
  resolveSnapshot(ref: string, diskId?: string): SnapshotRecord;
  publicSnapshot(s: SnapshotRecord): Snapshot;
  /** Keeps a snapshot from being deleted while a job reads it (as clone does); returns the unpin. */
  pin(snapshotId: string): () => void;
}
