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
 *
 * Writes on a full filesystem (see txn): catalog.mdb keeps real blocks past LMDB's last page
 * (space-reserve.ts), part of them for deletions only; a transaction that may need more than it
 * may have is refused whole with NoSpace before LMDB writes; what LMDB still fails is NoSpace or
 * IOError (write-errors.ts).
 */
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, closeSync, constants, lstatSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { BlocksnapError } from '../errors';
import { fsyncDirSync, makeDirsDurably } from '../durable-dirs';
import { formatBytes } from '../size-text';
import { lengthen, reserveTarget, spareTarget } from './space-reserve';
import { catalogWriteError, classifyCatalogWrite, fsSpace, nearlyFullBytes, type FsSpace } from './write-errors';
import type { Job } from '../engine/types';
import {
  CATALOG_FILE, META_BLOCK_SIZE, META_CREATED_AT, META_GENERATION, META_SCHEMA_VERSION, META_STORE_ID, META_STORE_TOTALS, SCHEMA_VERSION,
} from './schema';
import type { StoreStamp } from '../store/store-stamp';
import type { DiskRecord, SnapshotRecord, StoreTotals } from './records';

export type MapKey = [string, number];

export interface MapEntry { index: number; digest: Buffer | null }

export interface CatalogLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const silent: CatalogLog = { info() {}, warn() {} };

/**
 * Creates the catalog's file empty (LMDB sets a new environment up in an empty file) and fsyncs the
 * data dir, so that no commit lands in a file whose name a power cut could still take away. An
 * existing file is left to LMDB.
 */
function createDurably(path: string, dataDir: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw err;
  }
  closeSync(fd);
  fsyncDirSync(dataDir);
}

/** Takes group and other access away from the catalog's files, which older versions created 0644. */
function keepPrivate(files: string[], log: CatalogLog): void {
  for (const file of files) {
    try {
      const st = lstatSync(file);
      if (st.isFile() && (st.mode & 0o077) !== 0) {
        chmodSync(file, st.mode & 0o700);
        log.info({ file, mode: (st.mode & 0o777).toString(8) }, 'made the catalog file private (mode 0600)');
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      // Not fatal: the catalog works; the operator is told to fix its mode.
      log.warn({ file, err: (err as Error).message }, 'cannot make the catalog file private; chmod 600 it');
    }
  }
}

const KiB = 1024;
/** The most afterCommit adds to the room at once (about 20 ms of the daemon's thread). */
const LENGTHEN_STEP_BYTES = 16 * 1024 * KiB;
/** What any transaction that writes may need besides its own pages: branch pages, the free list. */
const TXN_BASE_BYTES = 64 * KiB;
/** New bytes per written entry at worst (a map entry is ~70 bytes, pages split half full). */
const ENTRY_BYTES = 256;

/** Named databases the environment may hold (schema.ts lists 13; room for more). */
const MAX_DBS = 32;

const NO_SPACE_ADVICE = 'Free space on that filesystem; deleting snapshots frees space (the catalog keeps room to delete them)';
const ROOM_USED_UP = 'The room the catalog keeps for deletions is used up and comes back once the filesystem has space: ' +
  'free space on that filesystem by other means, then retry';

/** The room past LMDB's last page of catalog.mdb (space-reserve.ts). */
export interface CatalogRoom {
  /** Bytes of catalog.mdb LMDB does not use yet. */
  tailBytes: number;
  /** What the tail should hold: the reserve (for deletions only) and the spare (for any change). */
  reserveBytes: number;
  spareBytes: number;
  /** LMDB's bytes (its last page included). */
  usedBytes: number;
}

/** What the catalog says of itself, for the store's stamp: storeId is undefined in a catalog an older version wrote. */
export interface CatalogIdentity { storeId: string | undefined; generation: number }

/** A new catalog's identity. */
export function newStoreId(): string {
  return randomBytes(16).toString('hex');
}

export class Catalog {
  private depth = 0;
  /** The running transaction changed which blocks are referenced or freed: the generation moves on. */
  private storeChanged = false;
  /** Told each new generation once it is committed (writes the store's stamp); null while deletions are held. */
  private stamp: ((s: StoreStamp) => void) | null = null;
  /** The running transaction deletes snapshots, which is how space is freed: it may use the reserve. */
  private frees = false;
  /**
   * The running transaction starts a snapshot: no reserve even if it also deletes snapshots,
   * since the snapshot's blocks and commit would take that room.
   */
  private starts = false;
  /** Entries the running transaction put or removed. */
  private writes = 0;
  private readonly pageSize: number;
  /** The room was short at the last look (for the log: it says when it is whole again). */
  private short = false;
  /** Warned once already that lengthening the file failed (other than for lack of space). */
  private lengthenFailed = false;

  private constructor(
    readonly path: string,
    readonly dataDir: string,
    private readonly log: CatalogLog,
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
  ) {
    this.pageSize = (root.getStats() as { pageSize?: number }).pageSize ?? 4096;
    for (const db of [meta, disks, snapshots, diskSnaps, maps, refs, free, jobs]) this.countWrites(db);
  }

  /**
   * Opens (or creates) the catalog in dataDir. A new catalog records blockSize; an existing one
   * keeps its own and ignores the argument, because block boundaries are frozen per store.
   * `mapSize` is only the initial map: LMDB grows it when a transaction fills it (tests start
   * tiny to prove that). Also lengthens catalog.mdb by its room (space-reserve.ts), as far as
   * the filesystem has space.
   */
  static open(dataDir: string, blockSize: number, o: { mapSize?: number; log?: CatalogLog } = {}): Catalog {
    makeDirsDurably(dataDir, 0o700);
    const path = join(dataDir, CATALOG_FILE);
    const noSpaceAtOpen = (err: unknown): unknown => {
      const f = classifyCatalogWrite(err, dataDir, fsSpace(dataDir));
      return f === null ? err : catalogWriteError(f, f.code === 'NoSpace' ? 'Free space on that filesystem, then start the daemon again' : 'Then start the daemon again');
    };
    let root: RootDatabase;
    try {
      createDurably(path, dataDir);
      // maxDbs: lmdb-js opens 12 named databases by default, and schema.ts lists more (an open
      // setting, not stored in the file: a catalog opened with fewer still reads its own).
      // permissionsMode (not in lmdb-js's typings, passed on to mdb_env_open): LMDB's 0664 would
      // let every user read disk paths, names, tags and remotes in a data dir others may search.
      root = open({ path, compression: false, maxDbs: MAX_DBS, ...(o.mapSize !== undefined ? { mapSize: o.mapSize } : {}), ...{ permissionsMode: 0o600 } });
    } catch (err) {
      throw noSpaceAtOpen(err);
    }
    keepPrivate([path, `${path}-lock`], o.log ?? silent);
    const meta = root.openDB<unknown, string>({ name: 'meta' });
    const version = meta.get(META_SCHEMA_VERSION);
    try {
      if (version !== undefined && version !== 1 && version !== 2 && version !== SCHEMA_VERSION) {
        throw new BlocksnapError('CatalogVersion',
          `catalog ${path} has schema version ${String(version)}; this blocksnap reads version ${SCHEMA_VERSION}` +
          (typeof version === 'number' && version > SCHEMA_VERSION ? ' (it was written by a newer blocksnap: upgrade)' : ''));
      }
      if (version !== SCHEMA_VERSION) {
        // Refused before LMDB writes (creating the catalog, or migrating it): it must not meet a
        // full filesystem (see admit).
        const space = fsSpace(dataDir);
        if (space !== null && space.availableBytes < 16 * TXN_BASE_BYTES) {
          throw new BlocksnapError('NoSpace', `the catalog could not be written: the filesystem of the data dir ${dataDir} is full (${formatBytes(space.availableBytes)} free). Free space on that filesystem, then start the daemon again`,
            { dataDir, availableBytes: space.availableBytes });
        }
      }
      if (version === 1 || version === 2) migrate(root, meta, version);
      if (version === undefined) {
        root.transactionSync(() => {
          meta.putSync(META_SCHEMA_VERSION, SCHEMA_VERSION);
          meta.putSync(META_BLOCK_SIZE, blockSize);
          meta.putSync(META_CREATED_AT, new Date().toISOString());
          meta.putSync(META_STORE_TOTALS, { blocks: 0, bytes: 0 } satisfies StoreTotals);
          meta.putSync(META_STORE_ID, newStoreId());
          meta.putSync(META_GENERATION, 0);
        });
      }
    } catch (err) {
      void root.close();
      throw noSpaceAtOpen(err);
    }
    const storedBlockSize = meta.get(META_BLOCK_SIZE) as number;
    const catalog = new Catalog(
      path, dataDir, o.log ?? silent, root, meta,
      root.openDB<DiskRecord, string>({ name: 'disks' }),
      root.openDB<SnapshotRecord, string>({ name: 'snapshots' }),
      root.openDB<number, [string, string]>({ name: 'diskSnaps' }),
      root.openDB<Buffer, MapKey>({ name: 'maps', encoding: 'binary' }),
      root.openDB<[number, number], Buffer>({ name: 'refs', keyEncoding: 'binary' }),
      root.openDB<number, Buffer>({ name: 'free', keyEncoding: 'binary' }),
      root.openDB<Job, string>({ name: 'jobs' }),
      storedBlockSize,
    );
    catalog.lengthenTail(true);
    return catalog;
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  /**
   * Runs fn in one synchronous, durable LMDB write transaction; a throw aborts all of it. Before
   * LMDB writes, a transaction that may need more than the filesystem's free space and the room
   * past LMDB's pages of catalog.mdb it may use is refused with NoSpace (admit); a failed write
   * throws NoSpace or IOError naming the data dir. Either way nothing of it is committed.
   */
  txn<T>(fn: () => T): T {
    if (this.depth > 0) return this.root.transactionSync(fn); // a child transaction: the outermost one decides
    let value: T;
    let stamped: StoreStamp | null = null;
    this.depth++;
    this.frees = false;
    this.starts = false;
    this.writes = 0;
    this.storeChanged = false;
    try {
      value = this.root.transactionSync(() => {
        const v = fn();
        // Not while deletions are held: the generation then stays behind the stamp's, so the
        // catalog is still known as an older one at the next start.
        if (this.storeChanged && this.stamp !== null) {
          const id = this.identity();
          if (id.storeId !== undefined) {
            stamped = { storeId: id.storeId, generation: id.generation + 1 };
            this.meta.putSync(META_GENERATION, stamped.generation);
          }
        }
        this.admit();
        return v;
      });
    } catch (err) {
      const f = classifyCatalogWrite(err, this.dataDir, fsSpace(this.dataDir));
      if (f === null) throw err;
      throw catalogWriteError(f, f.code === 'NoSpace' ? NO_SPACE_ADVICE : '');
    } finally {
      this.depth--;
    }
    if (this.writes > 0) this.afterCommit();
    if (stamped !== null) this.tellStamp(stamped);
    return value;
  }

  /** A consistent copy of the catalog (one read transaction) at `path`, which must not exist; LMDB's data only. */
  async copyTo(path: string): Promise<void> {
    await this.root.backup(path, false);
  }

  /** The catalog's identity and generation (store-stamp.ts). */
  identity(): CatalogIdentity {
    const storeId = this.meta.get(META_STORE_ID);
    const generation = this.meta.get(META_GENERATION);
    return { storeId: typeof storeId === 'string' ? storeId : undefined, generation: typeof generation === 'number' ? generation : 0 };
  }

  /** Sets the identity and generation (in a txn): a catalog from before stamps, or one the operator accepted. */
  setIdentity(storeId: string, generation: number): void {
    this.meta.putSync(META_STORE_ID, storeId);
    this.meta.putSync(META_GENERATION, generation);
  }

  /**
   * From now on, every commit that changes which blocks are referenced or freed moves the
   * generation on and hands it to `write` (the store's stamp); null stops both, while deletions
   * are held.
   */
  stampWith(write: ((s: StoreStamp) => void) | null): void {
    this.stamp = write;
  }

  private tellStamp(s: StoreStamp): void {
    try {
      this.stamp?.(s);
    } catch (err) {
      // The catalog is ahead of the stamp, which the next start takes as current: nothing is held
      // back, and the stamp is written again with the next generation.
      this.log.warn({ err, generation: s.generation }, 'could not write the block store\'s stamp; the next change writes it');
    }
  }

  /**
   * Marks the running transaction as one that deletes snapshots, which is how an operator frees
   * space: on a full filesystem it may use the reserve.
   */
  freesSpace(): void {
    if (this.depth > 0) this.frees = true;
  }

  /**
   * Decides, after fn and before LMDB writes anything, whether the commit may run out of space.
   * LMDB must not: lmdb-js formats a failed page write's message into a 100-byte buffer that its
   * numbers can overrun, and the daemon then dies of a corrupted heap (seen with lmdb 3.5.6 on a
   * full tmpfs and ext4). The bound is generous on purpose: every page the transaction can touch,
   * plus its new entries.
   */
  private admit(): void {
    if (this.writes === 0) return;
    // The same goes for a file LMDB may not write (a filesystem remounted read-only after an
    // error, an immutable catalog file): access(2) sees both, and its error is classified as the
    // write's would be.
    accessSync(this.path, constants.W_OK);
    const space = fsSpace(this.dataDir);
    if (space === null) return;
    if (this.mayNeed(this.fileBytes()) <= space.availableBytes) return;
    const room = this.room(space);
    const need = this.mayNeed(room.usedBytes);
    const forAny = space.availableBytes + Math.max(0, room.tailBytes - room.reserveBytes);
    if (need <= forAny) return;
    // The reserve is sized for the largest deletion: whole, it takes any, beyond the bound.
    const deletion = this.frees && !this.starts;
    if (deletion && space.availableBytes + room.tailBytes >= Math.min(need, room.reserveBytes)) {
      this.log.warn({ dataDir: this.dataDir, availableBytes: space.availableBytes, roomBytes: room.tailBytes, mayNeedBytes: need },
        'the data dir\'s filesystem is full: a deletion uses the room the catalog keeps for deletions; it grows back once there is space');
      return;
    }
    // The bound grows with the catalog, so a large change can be refused on a filesystem far from full.
    const state = space.availableBytes < nearlyFullBytes(space.totalBytes) ? 'is full' : 'has too little free space for this change';
    throw new BlocksnapError('NoSpace',
      `the catalog could not be written: the filesystem of the data dir ${this.dataDir} ${state} ` +
      `(${formatBytes(space.availableBytes)} free; a change of ${this.writes} entries to a catalog of ${formatBytes(room.usedBytes)} may need up to ${formatBytes(need)}). ` +
      `${deletion ? ROOM_USED_UP : NO_SPACE_ADVICE}`,
      { dataDir: this.dataDir, errno: 'ENOSPC', availableBytes: space.availableBytes, mayNeedBytes: need });
  }

  private mayNeed(usedBytes: number): number {
    return TXN_BASE_BYTES + Math.min(this.writes * this.pageSize, usedBytes + this.writes * ENTRY_BYTES);
  }

  private fileBytes(): number {
    try {
      return statSync(this.path).size;
    } catch {
      return 0;
    }
  }

  /** The room past LMDB's pages of catalog.mdb, and what it should be for the filesystem `space` is of. */
  room(space: FsSpace | null = fsSpace(this.dataDir)): CatalogRoom {
    const usedBytes = ((this.root.getStats() as { lastPageNumber: number }).lastPageNumber + 1) * this.pageSize;
    const fsBytes = space?.totalBytes ?? 0;
    return {
      tailBytes: Math.max(0, this.fileBytes() - usedBytes), usedBytes,
      reserveBytes: reserveTarget(usedBytes, fsBytes), spareBytes: spareTarget(fsBytes),
    };
  }

  /** Counts the entries a transaction writes (admit's bound), whoever writes them. */
  private countWrites(db: object): void {
    const d = db as unknown as { putSync: (...a: unknown[]) => unknown; removeSync: (...a: unknown[]) => unknown };
    const put = d.putSync.bind(d);
    const remove = d.removeSync.bind(d);
    d.putSync = (...a) => { this.writes++; return put(...a); };
    d.removeSync = (...a) => { this.writes++; return remove(...a); };
  }

  /**
   * LMDB's new pages take the room from its start, so after every commit it is measured (LMDB's
   * last page, a stat, a statfs) and lengthened again as far as the filesystem has space.
   */
  private afterCommit(): void {
    this.lengthenTail(false);
  }

  private lengthenTail(atOpen: boolean): void {
    const wasShort = this.short;
    try {
      const space = fsSpace(this.dataDir);
      if (space === null) return;
      const room = this.room(space);
      const target = room.reserveBytes + room.spareBytes;
      let tail = room.tailBytes;
      // After a commit at most LENGTHEN_STEP_BYTES: this runs on the daemon's only thread, and a
      // large snapshot can grow the catalog (and so its room) by hundreds of MiB; the following
      // commits refill the rest, and admit() counts only the room there is meanwhile.
      const step = atOpen ? target - tail : Math.min(target - tail, LENGTHEN_STEP_BYTES);
      if (tail < target) tail += lengthen(this.path, step, space.availableBytes, target);
      this.short = tail < target;
      if (atOpen && this.short) {
        this.log.warn({ dataDir: this.dataDir, roomBytes: tail, targetBytes: target, availableBytes: space.availableBytes },
          'the data dir\'s filesystem has too little free space for the room the catalog keeps; deleting snapshots on a full filesystem may fail until there is space');
      } else if (!atOpen && wasShort && !this.short) {
        this.log.info({ dataDir: this.dataDir, roomBytes: tail }, 'the room the catalog keeps for a full filesystem is whole again');
      }
    } catch (err) {
      if (!this.lengthenFailed) this.log.warn({ err, path: this.path }, 'could not lengthen the catalog file by its room');
      this.lengthenFailed = true;
    }
  }

  // ---- disks
  getDisk(id: string): DiskRecord | undefined { return this.disks.get(id); }
  putDisk(d: DiskRecord): void { this.disks.putSync(d.id, d); }
  deleteDisk(id: string): void { this.disks.removeSync(id); }
  allDisks(): DiskRecord[] { return [...this.disks.getRange()].map((e) => e.value); }

  // ---- snapshots
  getSnapshot(id: string): SnapshotRecord | undefined { return this.snapshots.get(id); }

  putSnapshot(s: SnapshotRecord): void {
    if (s.status === 'creating' && this.depth > 0) this.starts = true;
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
    this.storeChanged = true;
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
    this.storeChanged = true;
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
  isFree(digest: Buffer): boolean { return this.free.doesExist(digest); }
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
    const db = this.root.openDB<V, K>({ name, ...options });
    this.countWrites(db);
    return db;
  }

  // ---- jobs
  getJob(id: string): Job | undefined { return this.jobs.get(id); }
  putJob(job: Job): void { this.jobs.putSync(job.id, job); }
  allJobs(): Job[] { return [...this.jobs.getRange()].map((e) => e.value); }
  deleteJob(id: string): void { this.jobs.removeSync(id); }
}

/**
 * To the current schema, in one transaction. 1 → 2: disk records gain `cow` (null: every disk of
 * a version 1 catalog is an image file). 2 → 3: no record changes (schema.ts).
 */
function migrate(root: RootDatabase, meta: Database<unknown, string>, from: 1 | 2): void {
  const disks = root.openDB<DiskRecord, string>({ name: 'disks' });
  root.transactionSync(() => {
    if (from === 1) for (const { key, value } of disks.getRange()) disks.putSync(key, { ...value, cow: value.cow ?? null });
    meta.putSync(META_SCHEMA_VERSION, SCHEMA_VERSION);
  });
}
