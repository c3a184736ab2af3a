/**
 * The store-wide jobs: verify (every referenced block read back and checked against its digest)
 * and gc (every block file no snapshot references unlinked). The engine starts them as jobs and
 * keeps the sweeper, which unlinks what deletes free as they happen (docs/design.md, "Deleting
 * and gc" and "Damaged blocks").
 */
import { lstatSync } from 'node:fs';
import { BlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import { readView, viewDigests } from '../catalog/block-map';
import type { BlockStore, UnremovableEntry } from '../store/block-store';
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
  /** Why deletions are held (catalog-pairing.ts): verify says so, as its unreferenced blocks are then not gc's. */
  readonly catalogHold: () => { reason: string; message: string } | null;
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
    const releaseStore = await x.storeLock.acquireShared(ctl.signal);
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
  if (problems.length > 0) x.log.error({ jobId: ctl.job.id, problems: problems.length }, 'store verify found damaged blocks');
  const disksOf = (snapshots: string[]): string[] =>
    [...new Set(snapshots.map((id) => x.catalog.getSnapshot(id)?.diskId).filter((d): d is string => d !== undefined))];
  const survey = await surveyStore(x);
  return {
    checkedBlocks: r.checked,
    problems: problems.map((p) => {
      const snapshots = owners.get(p.digest) ?? [];
      const message = p.reason === 'io-error' ? ioErrorMessage(p.message, x.store.pathOf(Buffer.from(p.digest, 'hex'))) : p.message;
      return { ...p, message, snapshots, disks: disksOf(snapshots), repairable: p.reason !== 'io-error' };
    }),
    awaitingRepair,
    ...survey,
    catalogHold: x.catalogHold(),
  };
}

/** A read refused for its permissions is the file's owner or mode, which no snapshot rewrites. */
function ioErrorMessage(message: string, path: string): string {
  if (!/permission denied|EACCES|EPERM|not permitted/i.test(message)) return message;
  return `${message}; the daemon's user may not read ${path}: give it back its owner and mode (as its neighbours have), then run store verify again`;
}

/**
 * What `store gc` would find besides referenced blocks: block files no snapshot referenced when
 * listed, apart as gc tells them apart (a delete freed them, or nothing did: crash leftovers, or
 * blocks a snapshot running meanwhile has not committed yet), entries that are no block's, and
 * fan-out directories that cannot be read.
 */
async function surveyStore(x: StoreMaintenanceInternals): Promise<Pick<VerifyResult, 'unreferencedBlocks' | 'pendingFreeBlocks' | 'strayEntries' | 'strayExamples' | 'unreadable'>> {
  const strays = new FirstFew<string>(STRAYS_NAMED);
  const unreadable: UnremovableEntry[] = [];
  let unreferencedBlocks = 0;
  let pendingFreeBlocks = 0;
  for await (const e of x.store.entries()) {
    if (e.kind === 'stray') { strays.add(e.path); continue; }
    if (e.kind === 'unreadable') { unreadable.push(e.entry); continue; }
    const digest = Buffer.from(e.hex, 'hex');
    if (x.catalog.isReferenced(digest)) continue;
    if (x.catalog.isFree(digest)) pendingFreeBlocks++;
    else if (isOtherThanFile(x.store.pathOf(digest))) strays.add(x.store.pathOf(digest));
    else unreferencedBlocks++;
  }
  return { unreferencedBlocks, pendingFreeBlocks, strayEntries: strays.count, strayExamples: strays.listed, unreadable };
}

/**
 * Reclaims every block file no snapshot references (crash leftovers: a failed or cancelled snapshot frees its own) and
 * temp files. Holds the store lock exclusively: it waits for running snapshots to commit, and
 * snapshots started meanwhile wait for it. An entry it cannot remove or read is reported with its
 * path for the operator to remove by hand, and the others are reclaimed all the same.
 */
export async function collectGarbage(x: StoreMaintenanceInternals, ctl: JobControl): Promise<GcResult> {
  const release = await x.storeLock.acquireExclusive(ctl.signal);
  try {
    const removedTempFiles = await x.store.removeTempFiles();
    // Only what was free before the listing: a digest freed while it runs may name a file the
    // listing had already passed (referenced then), which only the sweeper will unlink now.
    const free = x.catalog.freeDigests();
    const freeHex = new Set(free.map((d) => d.toString('hex')));
    const reclaimed = new Set<string>();
    const met = new Set<string>();
    const unremovable = new FirstFew<UnremovableEntry>(UNREMOVABLE_LISTED);
    const strays = new FirstFew<string>(STRAYS_NAMED);
    let removedBlocks = 0;
    let removedBytes = 0;
    let orphanBlocks = 0;
    let orphanBytes = 0;
    let keptBlocks = 0;
    const total = x.catalog.totals().blocks + x.catalog.freeCount();
    for await (const e of x.store.entries()) {
      if (ctl.signal.aborted) throw new BlocksnapError('Cancelled', 'gc cancelled');
      if (e.kind === 'stray') { strays.add(e.path); continue; }
      if (e.kind === 'unreadable') { unremovable.add(e.entry); continue; }
      const digest = Buffer.from(e.hex, 'hex');
      if (x.catalog.isReferenced(digest)) {
        keptBlocks++;
      } else {
        const path = x.store.pathOf(digest);
        // Neither referenced nor freed, and no file (a directory): no block, so no crash orphan
        // either, but something someone put there, left to them as verify reports it. A snapshot
        // that stores the block later replaces it.
        if (!freeHex.has(e.hex) && isOtherThanFile(path)) { strays.add(path); continue; }
        const size = fileSizeOrZero(path);
        met.add(e.hex);
        const r = await x.store.reclaim(digest);
        if (r.unremovable) {
          unremovable.add(r.unremovable);
        } else {
          reclaimed.add(e.hex);
          if (r.removed) {
            removedBlocks++; removedBytes += size;
            // Not on the free list, so no delete freed it: a snapshot or import a crash cut off wrote it.
            if (!freeHex.has(e.hex)) { orphanBlocks++; orphanBytes += size; }
          }
        }
      }
      ctl.progress(keptBlocks + removedBlocks, Math.max(total, keptBlocks + removedBlocks));
    }
    // A freed block the listing did not meet is gone already, or in a fan-out directory it could
    // not read: asked by name, the first is confirmed, the second reported, and stays on the list.
    for (const d of free) {
      const hex = d.toString('hex');
      if (met.has(hex) || x.catalog.isReferenced(d)) continue;
      const r = await x.store.reclaim(d);
      if (r.unremovable) unremovable.add(r.unremovable); else reclaimed.add(hex);
    }
    const removedEmptyDirs = await x.store.removeEmptyFanouts();
    const gone = [...reclaimed].map((hex) => Buffer.from(hex, 'hex'));
    x.catalog.txn(() => {
      for (const d of free) if (reclaimed.has(d.toString('hex')) && !x.catalog.isReferenced(d)) x.catalog.removeFree(d);
      x.repair.forget(gone);
    });
    if (unremovable.count > 0) {
      x.log.error({ jobId: ctl.job.id, entries: unremovable.count, first: unremovable.listed }, 'gc could not remove some store entries; they must be removed by hand');
    }
    x.log.info({ jobId: ctl.job.id, removedBlocks, removedBytes, orphanBlocks, removedTempFiles, removedEmptyDirs, strayEntries: strays.count }, 'gc finished');
    return {
      removedBlocks, removedBytes, removedTempFiles, removedEmptyDirs, keptBlocks, orphanBlocks, orphanBytes,
      unremovableEntries: unremovable.count, unremovable: unremovable.listed, strayEntries: strays.count, strayExamples: strays.listed,
    };
  } finally {
    release();
  }
}

/** Lists at most this many unremovable entries by path; the count covers them all. */
const UNREMOVABLE_LISTED = 100;
/** Names at most this many stray entries; the count covers them all (a stray directory may hold thousands). */
const STRAYS_NAMED = 10;

/** Counts what it is given and keeps the first `most` of it, for a result that names a few. */
class FirstFew<T> {
  count = 0;
  readonly listed: T[] = [];

  constructor(private readonly most: number) {}

  add(item: T): void {
    this.count++;
    if (this.listed.length < this.most) this.listed.push(item);
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

/** Something is at `p`, and it is no regular file (a directory, a symlink): no block file. */
function isOtherThanFile(p: string): boolean {
  try {
    return !lstatSync(p).isFile();
  } catch {
    return false;
  }
}

/** A block file's size; 0 for anything else under its name (a directory has no bytes of a block). */
function fileSizeOrZero(p: string): number {
  try {
    const st = lstatSync(p);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}
