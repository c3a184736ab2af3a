/**
 * Per-disk snapshot quotas, as the cloud services have them: at most N manual and N automatic
 * snapshots per disk (256 each by default). A manual snapshot over quota is refused; an automatic
 * one makes room by deleting the disk's failed automatic snapshots, then its oldest available
 * ones, so a policy keeps running on a full disk and an operator's manual snapshots are never
 * touched by it. The room is made only once the new snapshot is committed `available`: a run
 * that fails, is cancelled or is cut off costs no snapshot, and while one is being created a
 * disk at its quota holds one automatic snapshot more (docs/design.md, Quotas).
 */
import { BlocksnapError } from '../errors';
import type { SnapshotRecord } from '../catalog/records';
import type { SnapshotType } from './types';

export interface SnapshotQuota { manual: number; auto: number }

export const DEFAULT_SNAPSHOT_QUOTA: Readonly<SnapshotQuota> = { manual: 256, auto: 256 };
export const SNAPSHOT_QUOTA_MAX = 65_536;

export function resolveQuota(q: Partial<SnapshotQuota> | undefined): SnapshotQuota {
  const out = { ...DEFAULT_SNAPSHOT_QUOTA, ...(q ?? {}) };
  for (const k of ['manual', 'auto'] as const) {
    const v = out[k];
    if (!Number.isSafeInteger(v) || v < 1 || v > SNAPSHOT_QUOTA_MAX) {
      throw new BlocksnapError('InvalidArgument', `the ${k} snapshot quota must be an integer from 1 to ${SNAPSHOT_QUOTA_MAX}, not ${String(v)}`);
    }
  }
  return out;
}

/**
 * The snapshots of `type` that count against the disk's quota. A failed manual snapshot does not:
 * it holds no blocks, and a cron taking snapshots of a moved image would otherwise fill the quota
 * with failures and go on refusing once the image is back (the newest FAILED_MANUAL_KEPT stay). A failed
 * automatic one counts, as the next available one deletes it first.
 */
export function quotaCounted(snaps: SnapshotRecord[], type: SnapshotType): SnapshotRecord[] {
  return snaps.filter((s) => s.type === type && (type === 'auto' || s.status !== 'error'));
}

/**
 * Failed manual snapshots a disk keeps, newest first: enough to show an operator what has been
 * failing, while a cron against a moved image, whose failures the quota no longer counts, cannot
 * grow the catalog without end. Older ones go in the transaction that records a new failure.
 */
export const FAILED_MANUAL_KEPT = 16;

/**
 * The failed manual snapshots of a disk past the newest FAILED_MANUAL_KEPT (`snaps` oldest first,
 * as snapshotsOfDisk gives them). A group's member stays: its group record names it.
 */
export function failedManualPast(snaps: SnapshotRecord[], kept: number = FAILED_MANUAL_KEPT): SnapshotRecord[] {
  const failed = snaps.filter((s) => s.type === 'manual' && s.status === 'error' && !s.groupId);
  return failed.slice(0, Math.max(0, failed.length - kept));
}

/** How many undeletable snapshots a refusal names (the message stays readable on a full disk). */
export const QUOTA_BLOCKERS_NAMED = 5;

/** An automatic snapshot a full quota could not delete, and why. */
export interface QuotaBlocker { snapshotId: string; reason: string }

/**
 * Whether a new snapshot of `type` may start, given the disk's snapshots; returns the automatic
 * snapshots that its commit would delete to bring the disk back within its quota (quotaExcess),
 * in the order they would go. Manual: nothing, or SnapshotQuotaExceeded. Auto: refused with
 * SnapshotQuotaExceeded when too few of them could go. `evictable` answers true, or false or the
 * reason one cannot be deleted now ("is exported as web1-base"): the refusal names the oldest of
 * those that cannot and why, so the operator knows what to stop or remove. `ownBase`: the base
 * of a copy-on-write disk, not counted against the manual quota: it cannot be deleted while it is
 * the base, and the new snapshot replaces it as such, so counting it would leave a disk at a
 * quota of one neither a new manual snapshot nor a deletable one (an automatic one counts it as
 * deletable instead, through `evictable`).
 */
export function quotaEvictions(
  diskName: string,
  snaps: SnapshotRecord[],
  type: SnapshotType,
  quota: SnapshotQuota,
  evictable: (s: SnapshotRecord) => boolean | string,
  ownBase: string | null = null,
): SnapshotRecord[] {
  const limit = quota[type];
  const same = quotaCounted(snaps, type).filter((s) => type === 'auto' || s.id !== ownBase);
  // The new snapshot counts too: once it commits, the disk must be back within its quota.
  const excess = same.length - limit + 1;
  if (excess <= 0) return [];
  if (type === 'manual') {
    throw new BlocksnapError('SnapshotQuotaExceeded',
      `disk ${diskName} has ${same.length} manual snapshots, its quota is ${limit}; delete one before taking another`,
      { quota: limit, count: same.length });
  }
  const { candidates, blocked } = evictionOrder(same, evictable);
  if (candidates.length < excess) {
    const named = blocked.slice(0, QUOTA_BLOCKERS_NAMED);
    const more = blocked.length - named.length;
    throw new BlocksnapError('SnapshotQuotaExceeded',
      `disk ${diskName} has ${same.length} automatic snapshots (quota ${limit}) and not enough of them can be deleted now to make room: ` +
      named.map((b) => `${b.snapshotId} ${b.reason}`).join('; ') + (more > 0 ? `; and ${more} more` : ''),
      { quota: limit, count: same.length, blocked: named });
  }
  return candidates.slice(0, excess);
}

/**
 * What to delete, now that automatic snapshot `committed` is `available`, to bring the disk back
 * within its automatic quota: failed ones first, then the oldest available ones, never
 * `committed` itself. Fewer than the excess when too few can go now (one became exported or
 * cloned from while the snapshot was taken): the disk then stays over quota until a later
 * snapshot's commit deletes them, as it does the excess a crash between a commit and its
 * evictions left.
 */
export function quotaExcess(
  snaps: SnapshotRecord[],
  quota: SnapshotQuota,
  committed: string,
  evictable: (s: SnapshotRecord) => boolean | string,
): SnapshotRecord[] {
  const autos = snaps.filter((s) => s.type === 'auto');
  const excess = autos.length - quota.auto;
  if (excess <= 0) return [];
  return evictionOrder(autos.filter((s) => s.id !== committed), evictable).candidates.slice(0, excess);
}

/**
 * The snapshots that may be evicted, failed ones first (they hold nothing to restore), each part
 * oldest first; and those that may not, oldest first, with the reason.
 */
function evictionOrder(
  same: SnapshotRecord[],
  evictable: (s: SnapshotRecord) => boolean | string,
): { candidates: SnapshotRecord[]; blocked: QuotaBlocker[] } {
  const oldestFirst = [...same].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  const blocked: QuotaBlocker[] = [];
  const candidates: SnapshotRecord[] = [];
  for (const s of oldestFirst) {
    const why = whyNotEvictable(s, evictable);
    if (why === null) candidates.push(s);
    else blocked.push({ snapshotId: s.id, reason: why });
  }
  const failed = candidates.filter((s) => s.status === 'error');
  return { candidates: [...failed, ...candidates.filter((s) => s.status !== 'error')], blocked };
}

/** null when the snapshot may be evicted, else why not (worded to follow its id). */
function whyNotEvictable(s: SnapshotRecord, evictable: (s: SnapshotRecord) => boolean | string): string | null {
  if (s.status === 'creating') return 'is still being created';
  if (s.groupId) return `is a member of group ${s.groupId}`;
  const ok = evictable(s);
  if (ok === true) return null;
  return typeof ok === 'string' ? ok : 'is in use (exported, read by a running job, the target of an unfinished rollback or the base of a copy-on-write disk)';
}
