import type { BlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import type { ModelCatalog } from '../catalog/model-records';
import type { EngineLogger } from './engine';
import type { DiskLocks } from './locks';
import type { SnapshotQuota } from './quotas';
import type { DeleteBatch } from './delete-in-batches';

/**
 * What the engine hands its own model modules (policies, groups) beyond its public API: the
 * catalog, the disk locks and pins, so that a group can take all its disks' locks at once and
 * delete its members in one transaction. The daemon never sees this; it holds the public API.
 */
export interface EngineInternals {
  readonly catalog: Catalog;
  readonly model: ModelCatalog;
  readonly diskLocks: DiskLocks;
  readonly log: EngineLogger;
  quota(): SnapshotQuota;
  /** The engine's clock (EngineOptions.now). */
  now(): Date;
  isPinned(snapshotId: string): boolean;
  /** SnapshotBusy for a pinned snapshot: who holds it, and how to let go before `then`. */
  snapshotBusy(s: SnapshotRecord, subject: string, then: string): BlocksnapError;
  /** The snapshot is the base of a copy-on-write disk (SnapshotHasClones: never deleted). */
  isCloneBase(snapshotId: string): boolean;
  /** The copy-on-write disk resting on the snapshot, if any; `except`: a disk not counted. */
  cloneOn(snapshotId: string, except?: string): DiskRecord | undefined;
  /**
   * Throws why the snapshot may not be deleted now, as deleteSnapshot would: a group member, the
   * base of a copy-on-write disk, pinned, the target of an interrupted rollback. The caller holds
   * the disk lock.
   */
  refuseDelete(s: SnapshotRecord): void;
  /** How many snapshots deleteInBatches deletes per transaction (EngineOptions.deleteBatch). */
  deleteBatch(): DeleteBatch;
  /** Whether the engine is closing: work that can stop between steps stops. */
  shuttingDown(): boolean;
  /** Lets the sweeper unlink blocks that deletes just freed. */
  afterDelete(): void;
}
