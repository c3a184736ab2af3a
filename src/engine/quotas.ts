/**
 * Per-disk snapshot quotas, as the cloud services have them: at most N manual and N automatic
 * snapshots per disk (256 each by default). A manual snapshot over quota is refused; an automatic
 * one makes room by deleting the disk's oldest automatic snapshots first, so a policy keeps
 * running on a full disk and an operator's manual snapshots are never touched by it.
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
 * What a new snapshot of `type` needs deleted first, given the disk's snapshots. Manual: nothing,
 * or SnapshotQuotaExceeded. Auto: the oldest automatic snapshots that `evictable` allows (never a
 * group member, never one still being created), enough to leave room for one more.
 */
export function quotaEvictions(
  diskName: string,
  snaps: SnapshotRecord[],
  type: SnapshotType,
  quota: SnapshotQuota,
  evictable: (s: SnapshotRecord) => boolean,
): SnapshotRecord[] {
  const limit = quota[type];
  const same = snaps.filter((s) => s.type === type);
  const excess = same.length - limit + 1;
  if (excess <= 0) return [];
  if (type === 'manual') {
    throw new BlocksnapError('SnapshotQuotaExceeded',
      `disk ${diskName} has ${same.length} manual snapshots, its quota is ${limit}; delete one before taking another`,
      { quota: limit, count: same.length });
  }
  const candidates = same
    .filter((s) => s.status !== 'creating' && !s.groupId && evictable(s))
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  if (candidates.length < excess) {
    throw new BlocksnapError('SnapshotQuotaExceeded',
      `disk ${diskName} has ${same.length} automatic snapshots (quota ${limit}) and not enough of them can be deleted now to make room`,
      { quota: limit, count: same.length });
  }
  return candidates.slice(0, excess);
}
