/**
 * The store-wide jobs: verify (every referenced block read back and checked against its digest)
 * and gc (every block file no snapshot references unlinked). The engine starts them as jobs and
 * keeps the sweeper, which unlinks what deletes free as they happen (docs/design.md, "Deleting
 * and gc" and "Damaged blocks").
 */
import { statSync } from 'node:fs';
import { BlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import { readView, viewDigests } from '../catalog/block-map';
import type { BlockStore } from '../store/block-store';
import { verifyBlocks } from '../native';
import type { BlockRepair } from './block-repair';
import type { JobControl } from './jobs';
import type { StoreLock } from './locks';
import type { EngineLogger } from './engine';
import type { GcResult, VerifyResult } from './types';

export interface StoreMaintenanceInternals {
  readonly catalog: Catalog;
  readonly store: BlockStore;
  readonly storeLock: StoreLock;
  readonly repair: BlockRepair;
  readonly log: EngineLogger;
  readonly threads: number | undefined;
}

/**
 * Reads every referenced block back. What looks damaged is read again under the shared store
 * lock, so a block a delete unlinked or a snapshot rewrote meanwhile is not reported.
 */
export async function verifyStore(x: StoreMaintenanceInternals, ctl: JobControl): Promise<VerifyResult> {
  const startedAt = Date.now();
  const checked = Buffer.concat([...x.catalog.referencedDigests()]);
  const threads = x.threads ? { threads: x.threads } : {};
  const r = await verifyBlocks({
    storeDir: x.store.dir, digests: checked, ...threads,
    onProgress: (d, t) => ctl.progress(d, t), signal: ctl.signal,
  });
  let problems = r.problems;
  if (problems.length > 0) {
    const releaseStore = await x.storeLock.acquireShared();
    try {
      const suspects = problems.filter((p) => x.catalog.isReferenced(Buffer.from(p.digest, 'hex')));
      problems = suspects.length === 0 ? [] : (await verifyBlocks({
        storeDir: x.store.dir, digests: Buffer.concat(suspects.map((p) => Buffer.from(p.digest, 'hex'))), ...threads, signal: ctl.signal,
      })).problems;
    } finally {
      releaseStore();
    }
  }
  const owners = problems.length > 0 ? snapshotsReferencing(x.catalog, new Set(problems.map((p) => p.digest))) : new Map<string, string[]>();
  // Damaged blocks are listed for repair by the next snapshot or import that produces them;
  // listed ones found intact (repaired meanwhile) are forgotten (block-repair.ts).
  const awaitingRepair = x.repair.afterVerify(problems, checked, startedAt, r.problems.map((p) => p.digest));
  if (problems.length > 0) x.log.error({ problems: problems.length }, 'store verify found damaged blocks');
  const disksOf = (snapshots: string[]): string[] =>
    [...new Set(snapshots.map((id) => x.catalog.getSnapshot(id)?.diskId).filter((d): d is string => d !== undefined))];
  return {
    checkedBlocks: r.checked,
    problems: problems.map((p) => {
      const snapshots = owners.get(p.digest) ?? [];
      return { ...p, snapshots, disks: disksOf(snapshots), repairable: p.reason !== 'io-error' };
    }),
    awaitingRepair,
  };
}

/**
 * Reclaims every block file no snapshot references (crash leftovers: a failed or cancelled snapshot frees its own) and
 * temp files. Holds the store lock exclusively: it waits for running snapshots to commit, and
 * snapshots started meanwhile wait for it.
 */
export async function collectGarbage(x: StoreMaintenanceInternals, ctl: JobControl): Promise<GcResult> {
  const release = await x.storeLock.acquireExclusive();
  try {
    const removedTempFiles = await x.store.removeTempFiles();
    // Only what was free before the listing: a digest freed while it runs may name a file the
    // listing had already passed (referenced then), which only the sweeper will unlink now.
    const free = x.catalog.freeDigests();
    const removed: Buffer[] = [];
    let removedBlocks = 0;
    let removedBytes = 0;
    let keptBlocks = 0;
    const total = x.catalog.totals().blocks + x.catalog.freeCount();
    for await (const hex of x.store.list()) {
      if (ctl.signal.aborted) throw new BlocksnapError('Cancelled', 'gc cancelled');
      const digest = Buffer.from(hex, 'hex');
      if (x.catalog.isReferenced(digest)) {
        keptBlocks++;
      } else {
        const size = fileSizeOrZero(x.store.pathOf(digest));
        if (await x.store.remove(digest)) { removedBlocks++; removedBytes += size; }
        removed.push(digest);
      }
      ctl.progress(keptBlocks + removedBlocks, Math.max(total, keptBlocks + removedBlocks));
    }
    x.catalog.txn(() => {
      for (const d of free) if (!x.catalog.isReferenced(d)) x.catalog.removeFree(d);
      x.repair.forget(removed);
    });
    x.log.info({ removedBlocks, removedBytes, removedTempFiles }, 'gc finished');
    return { removedBlocks, removedBytes, removedTempFiles, keptBlocks };
  } finally {
    release();
  }
}

/** The available snapshots that reference each of the `wanted` digests (hex). */
function snapshotsReferencing(catalog: Catalog, wanted: Set<string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of catalog.allSnapshots()) {
    if (s.status !== 'available') continue;
    for (const d of viewDigests(readView(catalog, s))) {
      const hex = d.toString('hex');
      if (!wanted.has(hex)) continue;
      const list = out.get(hex) ?? [];
      if (!list.includes(s.id)) list.push(s.id);
      out.set(hex, list);
    }
  }
  return out;
}

function fileSizeOrZero(p: string): number {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
}
