import type { Catalog } from '../catalog/catalog';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import type { BlockStore } from '../store/block-store';
import type { EngineLogger } from './engine';
import type { JobRunner } from './jobs';
import type { BlockRepair } from './block-repair';
import type { DiskLocks, StoreLock } from './locks';
import type { SnapshotQuota } from './quotas';
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
  /** Per-disk snapshot quotas (quotas.ts): an import counts like a snapshot of its type. */
  quota(): SnapshotQuota;
  /** The engine's clock (tests fix it). */
  now(): Date;
  /** Blocks listed as damaged: an import writes a listed block it downloads again (block-repair.ts). */
  readonly repair: BlockRepair;
  /**
   * Hands blocks a failed import stored to the sweeper: those still unreferenced go on the free
   * list and are unlinked once no snapshot is writing (call without holding the store lock).
   */
  releaseOrphans(digests: Buffer[]): void;
  /** The names of the policies that replicate to the remote `name`. */
  policiesReplicatingTo(name: string): string[];
}
