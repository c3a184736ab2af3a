/**
 * The part of the engine the daemon serves. Declared here, structurally, rather than imported as
 * the Engine class, so that the protocol layer can be exercised against a stand-in and so that the
 * daemon states exactly which engine calls the wire exposes. The real Engine satisfies it.
 */
import type { EventEmitter } from 'node:events';
import type { CatalogAccepted, CatalogBackup, ChainSummary, Disk, ImageFormat, Job, RollbackAbandoned, Snapshot, StoreStats } from '../engine/types';
import type { Policies } from '../engine/policies';
import type { SnapshotGroups } from '../engine/groups';
import type { UserAccess } from '../engine/user-access';
import type { Offsite } from '../engine/offsite';
import type { Exports } from '../engine/exports';

export interface DaemonEngine extends Pick<EventEmitter, 'on' | 'off'> {
  readonly dataDir: string;
  readonly imageRoots: string[];
  close(): Promise<void>;

  addDisk(p: { path: string; name?: string; format?: ImageFormat }, user?: UserAccess): Promise<Disk>;
  listDisks(): Disk[];
  getDisk(ref: string): Disk;
  removeDisk(ref: string, o?: { deleteSnapshots?: boolean; discardWrites?: boolean }): Promise<Disk>;
  relocateDisk(ref: string, path: string, user?: UserAccess): Disk;

  startSnapshot(diskRef: string, o?: { name?: string; description?: string }): Job;
  listSnapshots(diskRef?: string): Snapshot[];
  getSnapshot(ref: string): Snapshot;
  deleteSnapshot(ref: string): Promise<Snapshot>;
  tagSnapshot(ref: string, tags: Record<string, string>): Snapshot;
  untagSnapshot(ref: string, keys: string[]): Snapshot;

  readonly policies: Pick<Policies, 'create' | 'list' | 'get' | 'update' | 'delete' | 'bind' | 'unbind' | 'run'>;
  readonly groups: Pick<SnapshotGroups, 'create' | 'list' | 'get' | 'rollback' | 'delete'>;
  /** Remotes, replication and snapshot streams. */
  readonly offsite: Pick<Offsite, 'replication' | 'remoteRestore' | 'remoteGc' | 'remoteVerify' | 'streams'>;
  /** NBD exports of snapshots. */
  readonly exports: Pick<Exports, 'start' | 'startDisk' | 'list' | 'get' | 'stop' | 'endpoint'>;

  startRollback(diskRef: string, snapRef: string, o?: { force?: boolean }): Job;
  abandonRollback(diskRef: string, snapRef?: string): RollbackAbandoned;
  startClone(snapRef: string, path: string, o?: { format?: ImageFormat; user?: UserAccess }): Job;
  cloneCow(snapRef: string, name: string): Promise<Disk>;
  startFlatten(diskRef: string, path: string, o?: { format?: ImageFormat; user?: UserAccess }): Job;
  startVerify(): Job;
  startGc(): Job;

  listChains(diskRef?: string): ChainSummary[];
  storeStats(): StoreStats;
  backupCatalog(path: string): Promise<CatalogBackup>;
  acceptCatalog(): CatalogAccepted;

  listJobs(): Job[];
  getJob(id: string): Job;
  cancelJob(id: string): Job;
  /** Resolves with the job once it reached any end state. */
  waitJob(id: string): Promise<Job>;
}

/** Job states after which a job never changes again. */
export function isFinished(job: Job): boolean {
  return job.state !== 'running';
}
