/**
 * The catalog: disks, snapshots, per-snapshot block-map deltas, block reference counts and jobs,
 * in one LMDB environment so that every change tying the catalog to the block store commits in
 * one transaction (see schema.ts for the databases).
 *
 * Reference counts: refs[digest].count is the number of map entries, over every snapshot's delta,
 * that name the digest. A block is referenced by a live snapshot exactly when its count is > 0.
 * When a count drops to 0 the digest moves to `free` in the same transaction; the sweeper unlinks
 * free blocks only while no snapshot is writing (StoreLock), and a snapshot that commits a digest
 * found in `free` takes it back (resurrects it) in its own commit transaction.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { BlocksnapError } from '../errors';
import type { Job } from '../engine/types';
import {
  CATALOG_FILE, META_BLOCK_SIZE, META_CREATED_AT, META_SCHEMA_VERSION, META_STORE_TOTALS, SCHEMA_VERSION,
} from './schema';
import type { DiskRecord, SnapshotRecord, StoreTotals } from './records';

export type MapKey = [string, number];

export interface MapEntry { index: number; digest: Buffer | null }

export class Catalog {
  private constructor(
    readonly path: string,
    private readonly root: RootDatabase,
    private readonly meta: Database<unknown, string>,
    private readonly disks: Database<DiskRecord, string>,
    private readonly snapshots: Database<SnapshotRecord, string>,
    private readonly diskSnaps: Database<number, [string, string]>,
    private readonly maps: Database<Buffer, MapKey>,
    private readonly refs: Database<[number, number], Buffer>,
    private readonly free: Database<number, Buffer>,
    private readonly jobs: Database<Job, string>,
    readonly blockSize: number,
  ) {}

  /**
   * Opens (or creates) the catalog in dataDir. A new catalog records blockSize; an existing one
   * keeps its own and ignores the argument, because block boundaries are frozen per store.
   * `mapSize` is only the initial map: LMDB grows it when a transaction fills it (tests start
   * tiny to prove that).
   */
  static open(dataDir: string, blockSize: number, o: { mapSize?: number } = {}): Catalog {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const path = join(dataDir, CATALOG_FILE);
    const root = open({ path, compression: false, ...(o.mapSize !== undefined ? { mapSize: o.mapSize } : {}) });
    const meta = root.openDB<unknown, string>({ name: 'meta' });
    const version = meta.get(META_SCHEMA_VERSION);
    if (version === 1) migrateFrom1(root, meta);
    else if (version !== undefined && version !== SCHEMA_VERSION) {
      void root.close();
      throw new BlocksnapError('CatalogVersion',
        `catalog ${path} has schema version ${String(version)}; this blocksnap reads version ${SCHEMA_VERSION}` +
        (typeof version === 'number' && version > SCHEMA_VERSION ? ' (it was written by a newer blocksnap: upgrade)' : ''));
    }
    if (version === undefined) {
      root.transactionSync(() => {
        meta.putSync(META_SCHEMA_VERSION, SCHEMA_VERSION);
        meta.putSync(META_BLOCK_SIZE, blockSize);
        meta.putSync(META_CREATED_AT, new Date().toISOString());
        meta.putSync(META_STORE_TOTALS, { blocks: 0, bytes: 0 } satisfies StoreTotals);
      });
    }
    const storedBlockSize = meta.get(META_BLOCK_SIZE) as number;
    return new Catalog(
      path, root, meta,
      root.openDB<DiskRecord, string>({ name: 'disks' }),
      root.openDB<SnapshotRecord, string>({ name: 'snapshots' }),
      root.openDB<number, [string, string]>({ name: 'diskSnaps' }),
      root.openDB<Buffer, MapKey>({ name: 'maps', encoding: 'binary' }),
      root.openDB<[number, number], Buffer>({ name: 'refs', keyEncoding: 'binary' }),
      root.openDB<number, Buffer>({ name: 'free', keyEncoding: 'binary' }),
      root.openDB<Job, string>({ name: 'jobs' }),
      storedBlockSize,
    );
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  /** Runs fn in one synchronous, durable LMDB write transaction; a throw aborts all of it. */
  txn<T>(fn: () => T): T {
    return this.root.transactionSync(fn);
  }

  // ---- disks
  getDisk(id: string): DiskRecord | undefined { return this.disks.get(id); }
  putDisk(d: DiskRecord): void { this.disks.putSync(d.id, d); }
  deleteDisk(id: string): void { this.disks.removeSync(id); }
  allDisks(): DiskRecord[] { return [...this.disks.getRange()].map((e) => e.value); }

  // ---- snapshots
  getSnapshot(id: string): SnapshotRecord | undefined { return this.snapshots.get(id); }

  putSnapshot(s: SnapshotRecord): void {
    this.snapshots.putSync(s.id, s);
    this.diskSnaps.putSync([s.diskId, s.id], 1);
  }

  deleteSnapshotRecord(s: SnapshotRecord): void {
    this.snapshots.removeSync(s.id);
    this.diskSnaps.removeSync([s.diskId, s.id]);
  }

  snapshotsOfDisk(diskId: string): SnapshotRecord[] {
    const out: SnapshotRecord[] = [];
    for (const key of this.diskSnaps.getKeys({ start: [diskId, ''], end: [diskId, '\uffff'] })) {
      const s = this.snapshots.get(key[1]);
      if (s) out.push(s);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  allSnapshots(): SnapshotRecord[] { return [...this.snapshots.getRange()].map((e) => e.value); }

  // ---- block-map deltas
  /** A snapshot's delta entries below `limit`, in block order. ZERO entries have digest null. */
  *delta(snapshotId: string, limit = Number.MAX_SAFE_INTEGER): Generator<MapEntry> {
    for (const { key, value } of this.maps.getRange({ start: [snapshotId, 0], end: [snapshotId, limit] })) {
      yield { index: key[1], digest: value.length === 0 ? null : Buffer.from(value) };
    }
  }

  deltaSize(snapshotId: string): number {
    return this.maps.getCount({ start: [snapshotId, 0], end: [snapshotId, Number.MAX_SAFE_INTEGER] });
  }

  hasEntry(snapshotId: string, index: number): boolean {
    return this.maps.doesExist([snapshotId, index]);
  }

  putEntry(snapshotId: string, index: number, digest: Buffer | null): void {
    this.maps.putSync([snapshotId, index], digest ?? Buffer.alloc(0));
  }

  removeEntry(snapshotId: string, index: number): void {
    this.maps.removeSync([snapshotId, index]);
  }

  // ---- reference counts (call inside txn)
  refCount(digest: Buffer): number { return this.refs.get(digest)?.[0] ?? 0; }
  refBytes(digest: Buffer): number { return this.refs.get(digest)?.[1] ?? 0; }

  /** Adds one reference; returns true when the block was unreferenced before (new to the store's live set). */
  addRef(digest: Buffer, rawBytes: number): boolean {
    const cur = this.refs.get(digest);
    if (cur) {
      this.refs.putSync(digest, [cur[0] + 1, cur[1]]);
      return false;
    }
    this.refs.putSync(digest, [1, rawBytes]);
    this.free.removeSync(digest);
    this.adjustTotals(1, rawBytes);
    return true;
  }

  /** Drops one reference; returns true when it was the last one (the block is now free). */
  dropRef(digest: Buffer): boolean {
    const cur = this.refs.get(digest);
    if (!cur) throw new BlocksnapError('Internal', `reference count underflow for block ${digest.toString('hex')}`);
    if (cur[0] > 1) {
      this.refs.putSync(digest, [cur[0] - 1, cur[1]]);
      return false;
    }
    this.refs.removeSync(digest);
    this.free.putSync(digest, Date.now());
    this.adjustTotals(-1, -cur[1]);
    return true;
  }

  isReferenced(digest: Buffer): boolean { return this.refs.doesExist(digest); }

  *referencedDigests(): Generator<Buffer> {
    for (const key of this.refs.getKeys()) yield Buffer.from(key);
  }

  freeDigests(): Buffer[] { return [...this.free.getKeys()].map((k) => Buffer.from(k)); }
  freeCount(): number { return this.free.getCount(); }
  removeFree(digest: Buffer): void { this.free.removeSync(digest); }
  /** Puts an unreferenced digest on the free list (a block stored by an import that then failed), for the sweeper. */
  markFree(digest: Buffer): void { if (!this.refs.doesExist(digest)) this.free.putSync(digest, Date.now()); }

  totals(): StoreTotals { return this.meta.get(META_STORE_TOTALS) as StoreTotals; }

  private adjustTotals(blocks: number, bytes: number): void {
    const t = this.totals();
    this.meta.putSync(META_STORE_TOTALS, { blocks: t.blocks + blocks, bytes: t.bytes + bytes });
  }

  /** Opens another database of this environment (listed in schema.ts), for accessors kept in their own files. */
  database<V, K extends Key = string>(name: string, options: { keyEncoding?: 'binary' | 'ordered-binary' } = {}): Database<V, K> {
    return this.root.openDB<V, K>({ name, ...options });
  }

  // ---- jobs
  getJob(id: string): Job | undefined { return this.jobs.get(id); }
  putJob(job: Job): void { this.jobs.putSync(job.id, job); }
  allJobs(): Job[] { return [...this.jobs.getRange()].map((e) => e.value); }
  deleteJob(id: string): void { this.jobs.removeSync(id); }
}

/** Schema 1 → 2: disk records gain `cow` (null: every disk of a version 1 catalog is an image file). */
function migrateFrom1(root: RootDatabase, meta: Database<unknown, string>): void {
  const disks = root.openDB<DiskRecord, string>({ name: 'disks' });
  root.transactionSync(() => {
    for (const { key, value } of disks.getRange()) disks.putSync(key, { ...value, cow: value.cow ?? null });
    meta.putSync(META_SCHEMA_VERSION, SCHEMA_VERSION);
  });
}
