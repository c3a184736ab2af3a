/**
 * Catalog records and accessors of the snapshot model above single snapshots: policies (automatic
 * schedules with retention), their bindings to disks, and snapshot groups. Same LMDB environment
 * as the rest of the catalog (schema.ts), so a policy run's bookkeeping or a group's status
 * commits in the same kind of transaction as the snapshots it names. Writes run inside Catalog.txn.
 */
import type { Database } from 'lmdb';
import { BlocksnapError } from '../errors';
import type { Catalog } from './catalog';
import type { Retention } from '../engine/retention';

export interface PolicyEvent {
  /** The due time handled (a scheduled time, or the request time of `policy run`). */
  dueAt: string;
  at: string;
  diskId: string;
  outcome: 'created' | 'failed' | 'skipped';
  snapshotId: string | null;
  /**
   * Automatic snapshots this run deleted: those the quota evicted once its snapshot was available,
   * then those retention deleted. Empty when its snapshot did not become available.
   */
  expired: string[];
  error: { code: string; message: string } | null;
  /** The replication this run started (policies with replicateTo); absent in older records. */
  replication?: PolicyReplication | null;
}

/**
 * A policy run's replication job: `running` when the event is recorded, updated in place when the
 * job ends; `skipped` when the previous one was still running (the next run covers this snapshot).
 */
export interface PolicyReplication {
  remote: string;
  jobId: string | null;
  state: 'running' | 'succeeded' | 'failed' | 'skipped';
  error: { code: string; message: string } | null;
}

export interface PolicyRecord {
  id: string;
  name: string;
  description: string;
  /** Hours of the day (0-23) and ISO weekdays (1 Monday - 7 Sunday) it runs at, in timeZone. */
  hours: number[];
  weekdays: number[];
  timeZone: string;
  retention: Retention;
  enabled: boolean;
  /** Remote each run replicates the disk's automatic snapshots to; absent in older records. */
  replicateTo?: string | null;
  createdAt: string;
  updatedAt: string;
  /**
   * When the schedule (hours, weekdays, time zone, enabled) last changed: due times at or before
   * it are not owed. Other updates leave it. Absent in older records, which read updatedAt.
   */
  scheduleChangedAt?: string;
  /** Most recent last: what the scheduler and `policy run` did, capped at POLICY_HISTORY_LIMIT. */
  history: PolicyEvent[];
}

/** One disk's policy (a disk has at most one, so the disk id is the key). */
export interface PolicyBinding {
  diskId: string;
  policyId: string;
  boundAt: string;
  /**
   * The newest scheduled time the scheduler has handled for this disk (taken, failed or skipped):
   * due times at or before it are not owed. Moved back to just before a due time whose run the
   * daemon died in (owed again), or to the present when a wall clock that was ahead is corrected.
   */
  lastDueAt: string | null;
}

export type GroupStatus = 'creating' | 'available' | 'error';

export interface GroupRecord {
  id: string;
  name: string;
  description: string;
  status: GroupStatus;
  diskIds: string[];
  /** Member snapshots, one per disk, in diskIds order (fewer while starting or after a failure). */
  snapshotIds: string[];
  createdAt: string;
  completedAt: string | null;
  error: { code: string; message: string } | null;
  /**
   * `point-in-time`: every member is a copy-on-write disk, all cut at one instant. `per-disk`:
   * each member is as consistent as its own snapshot says, at its own moment. Absent in groups
   * created before it was recorded.
   */
  consistency?: GroupConsistency;
}

export type GroupConsistency = 'point-in-time' | 'per-disk';

export const POLICY_HISTORY_LIMIT = 100;

export class ModelCatalog {
  private readonly policies: Database<PolicyRecord, string>;
  private readonly bindings: Database<PolicyBinding, string>;
  private readonly groups: Database<GroupRecord, string>;

  constructor(readonly catalog: Catalog) {
    this.policies = catalog.database<PolicyRecord>('policies');
    this.bindings = catalog.database<PolicyBinding>('policyDisks');
    this.groups = catalog.database<GroupRecord>('groups');
  }

  txn<T>(fn: () => T): T { return this.catalog.txn(fn); }

  // ---- policies
  getPolicy(id: string): PolicyRecord | undefined { return this.policies.get(id); }
  putPolicy(p: PolicyRecord): void { this.policies.putSync(p.id, p); }
  deletePolicy(id: string): void { this.policies.removeSync(id); }
  allPolicies(): PolicyRecord[] {
    return [...this.policies.getRange()].map((e) => e.value).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  /** Sets the outcome of a run's replication job, found by its job id in the policy's history. */
  endPolicyReplication(policyId: string, jobId: string, r: PolicyReplication): void {
    const p = this.policies.get(policyId);
    if (!p) return;
    const history = p.history.map((e) => (e.replication?.jobId === jobId ? { ...e, replication: r } : e));
    this.policies.putSync(p.id, { ...p, history });
  }

  appendPolicyEvent(policyId: string, e: PolicyEvent): void {
    const p = this.policies.get(policyId);
    if (!p) return; // deleted while it ran: nothing left to record on
    const history = [...p.history, e].slice(-POLICY_HISTORY_LIMIT);
    this.policies.putSync(p.id, { ...p, history });
  }

  // ---- bindings
  getBinding(diskId: string): PolicyBinding | undefined { return this.bindings.get(diskId); }
  putBinding(b: PolicyBinding): void { this.bindings.putSync(b.diskId, b); }
  deleteBinding(diskId: string): void { this.bindings.removeSync(diskId); }
  bindingsOf(policyId: string): PolicyBinding[] {
    return [...this.bindings.getRange()].map((e) => e.value).filter((b) => b.policyId === policyId)
      .sort((a, b) => a.boundAt.localeCompare(b.boundAt) || a.diskId.localeCompare(b.diskId));
  }

  // ---- groups
  getGroup(id: string): GroupRecord | undefined { return this.groups.get(id); }
  putGroup(g: GroupRecord): void { this.groups.putSync(g.id, g); }
  deleteGroup(id: string): void { this.groups.removeSync(id); }
  /** Appends a member to the group's list, in the transaction that commits the member's record. */
  addGroupMember(groupId: string, snapshotId: string): void {
    const g = this.groups.get(groupId);
    if (!g) throw new BlocksnapError('GroupNotFound', `group ${groupId} no longer exists`, { groupId });
    this.groups.putSync(g.id, { ...g, snapshotIds: [...g.snapshotIds, snapshotId] });
  }
  allGroups(): GroupRecord[] {
    return [...this.groups.getRange()].map((e) => e.value).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }
}
