/**
 * The engine: snapshot, rollback, clone, delete, gc and verify over the catalog (LMDB), the block
 * store and the native scanner/applier. It is the only writer of the catalog, and it holds the
 * data-dir lock, so its in-process locks (locks.ts) are the whole locking story; docs/design.md
 * has the table.
 *
 * State held here besides the catalog: which disk runs which job (DiskLocks), which snapshots a
 * clone is reading (pins), the store lock, and whether a sweep of freed blocks is due. The open
 * volumes of copy-on-write disks live in CowVolumes (cow-volumes.ts).
 */
import { EventEmitter } from 'node:events';
import { basename, resolve } from 'node:path';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { formatBytes } from '../size-text';
import { Catalog } from '../catalog/catalog';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import { ChainLinks, commitDelta, distinctBlocks, readView, removeFromChain, uniqueBytes } from '../catalog/block-map';
import { BlockStore, type UnremovableEntry } from '../store/block-store';
import { DEFAULT_BLOCK_SIZE, DIGEST_SIZE, isValidBlockSize } from '../store/format';
import { scanImage, lockDataDir, writtenDigestsOf, type DataDirLock } from '../native';
import { backingDependents, checkNotBacking } from './backing-dependents';
import {
  checkBackingAsGiven, checkBlockCount, checkNotInUse, checkNotSetId, checkRollbackTarget, checkSizeKept, detectFormat, fileIdentity, imageFormatOf, imageSize,
  inspectImage, type ImageFacts,
} from './image-access';
import { ScanWatch } from './scan-consistency';
import type { SharedInstant } from './shared-instant';
import { checkDiskPath, checkRelocatedFormat } from './disk-path';
import { cloneImage, removeRollbackLeftovers } from './image-writes';
import { looksLikeId, newId, resolveIdOrName, someOf } from './ids';
import { DiskLocks, StoreLock } from './locks';
import { JobRunner, type JobControl } from './jobs';
import { JOB_HISTORY_LIMIT } from '../catalog/schema';
import { defaultSnapshotName, nameFromPath, snapshotNameTaken, uniqueName, validateManualSnapshotName, validateName } from './names';
import { validateDescription } from './text-fields';
import { checkDataDir, fenceDataDirOf, resolveExistingImage, resolveNewFile, resolveRoots } from './paths';
import { removeInterruptedPartials, writePartial } from './partial-files';
import { newFileFor, resolvedFor, type UserAccess } from './user-access';
import { checkRegistrantImage, inspectDiskImage, registrantAccess } from './registrant-access';
import { ModelCatalog } from '../catalog/model-records';
import { Policies } from './policies';
import { SnapshotGroups } from './groups';
import { failedManualPast, quotaEvictions, quotaExcess, resolveQuota, type SnapshotQuota } from './quotas';
import { removeSnapshot } from './remove-snapshot';
import { DELETE_BATCH, type DeleteBatch } from './delete-in-batches';
import { snapshotProgress } from './progress';
import { withTags, withoutTags } from './tags';
import { Offsite } from './offsite';
import type { ReplicationOptions } from './replication';
import { Exports } from './exports';
import { CowVolumes } from './cow-volumes';
import { CowDisks } from './cow-disks';
import { BlockRepair, hexDigests } from './block-repair';
import { withDamageGuidance } from './damage-guidance';
import { abandonedImage, abandonedMessage, ImageRollbacks } from './image-rollback';
import { collectGarbage, verifyStore, type StoreMaintenanceInternals } from './store-maintenance';
import { backupCatalog } from './catalog-backup';
import { acceptCatalog, catalogAbsent, pairCatalog, probeCatalog, refuseMissingCatalog, storeInUse, type CatalogHold } from './catalog-pairing';
import type {
  ChainSummary, CloneResult, Disk, FlattenResult, ImageFormat, Job, JobKind, RollbackAbandoned, Snapshot,
  SnapshotCreateOptions, StoreStats, CatalogAccepted, CatalogBackup,
} from './types';

export interface EngineLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface EngineOptions {
  dataDir: string;
  /** Directories images may be registered in and cloned into (resolved with realpath). */
  imageRoots: string[];
  /** Block size of a new store; an existing store keeps its own. */
  blockSize?: number;
  /** Native worker threads per job (default: all cores). */
  threads?: number;
  /** Snapshots per disk and type (default 256 manual, 256 automatic). */
  snapshotQuota?: Partial<SnapshotQuota>;
  /** The time snapshots and policies are stamped with (tests move it; default: the system clock). */
  now?: () => Date;
  logger?: EngineLogger;
  /**
   * Snapshots a policy run's retention deletes per catalog transaction, serving requests between
   * transactions (default 64; tests make batches small to see the daemon serve between them).
   */
  deleteBatch?: number;
  /** How remotes' object stores are opened and lease timing (tests observe and hold back requests; default: S3). */
  replication?: ReplicationOptions;
  /** Creates a new, empty catalog where there is none beside a store of blocks, which is otherwise refused (CatalogMissing). */
  newCatalog?: boolean;
}


const silent: EngineLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** How many of the jobs a crash interrupted the start's recovery line names (it stays one line after a busy crash). */
const RECOVERY_JOBS_NAMED = 10;

/**
 * The kinds of job that store blocks before a commit references them (a qcow2 restore stages the
 * blocks it downloads): cut off by a crash, they leave block files no snapshot references (one
 * that fails or is cancelled frees its own).
 */
const STORING_KINDS: ReadonlySet<JobKind> = new Set<JobKind>(['snapshot', 'import', 'restore']);

export class Engine extends EventEmitter {
  private readonly diskLocks = new DiskLocks((diskId) => {
    const d = this.catalog.getDisk(diskId);
    const id = d === undefined || d.cow !== null ? null : fileIdentity(d.path);
    return id === null ? null : `${id.dev}:${id.ino}`;
  }, (diskId) => this.catalog.getDisk(diskId)?.name ?? diskId);
  // Deletes while the store lock is held cannot sweep; they leave that to its release.
  private readonly storeLock = new StoreLock(() => {
    if (!this.sweepWanted) return;
    try {
      this.scheduleSweep();
    } catch (err) {
      this.log.error({ err }, 'could not start sweeping freed blocks; the next delete or gc will');
    }
  });
  private readonly pins = new Map<string, number>();
  private readonly jobs: JobRunner;
  private sweeping: Promise<void> | null = null;
  /** Set when the catalog is not known to be the store's (catalog-pairing.ts): nothing in the store or cow/ is deleted. */
  private catalogHold: CatalogHold | null = null;
  /** Blocks were freed while a sweep could not start (or had already read the free list). */
  private sweepWanted = false;
  /** Freed block files the last sweep could not unlink, by digest (hex), for `store stats`. */
  private unremovable = new Map<string, UnremovableEntry>();
  private closing = false;

  /** Whether close() has begun: a job cancelled now was cancelled by the daemon's shutdown. */
  get shuttingDown(): boolean {
    return this.closing;
  }
  private quota: SnapshotQuota = resolveQuota(undefined);
  private deleteBatch: DeleteBatch = DELETE_BATCH;
  private clock: () => Date = () => new Date();
  /** Lets clients name paths in the data dir again, once it is closed (data-dir-fence.ts). */
  private unfence: () => void = () => undefined;
  /** Automatic snapshot policies and snapshot groups (policies.ts, groups.ts). */
  readonly policies: Policies;
  readonly groups: SnapshotGroups;
  /** Replication to S3-compatible remotes and host-to-host streams (offsite.ts). */
  readonly offsite: Offsite;
  /** NBD exports of snapshots (exports.ts); the daemon's NBD server serves them. */
  readonly exports: Exports;
  /** Open volumes of copy-on-write disks (cow-volumes.ts) and the operations on such disks. */
  private readonly volumes: CowVolumes;
  private readonly cow: CowDisks;
  private readonly model: ModelCatalog;
  private readonly rollbacks: ImageRollbacks;
  private readonly maintenance: StoreMaintenanceInternals;
  /** Blocks found damaged, and their repair by the next snapshot or import that produces them (block-repair.ts). */
  private readonly repair: BlockRepair;

  private constructor(
    readonly dataDir: string,
    readonly imageRoots: string[],
    private readonly catalog: Catalog,
    private readonly store: BlockStore,
    private readonly lock: DataDirLock,
    private readonly threads: number | undefined,
    private readonly log: EngineLogger,
    replication: ReplicationOptions = {},
  ) {
    super();
    this.jobs = new JobRunner(catalog, this, JOB_HISTORY_LIMIT, log);
    this.repair = new BlockRepair({ catalog, storeDir: store.dir, log, threads });
    this.model = new ModelCatalog(catalog);
    const internals = {
      catalog, model: this.model, diskLocks: this.diskLocks, log,
      quota: () => this.quota, now: () => this.clock(), isPinned: (id: string) => this.pins.has(id), afterDelete: () => this.scheduleSweep(),
      isCloneBase: (id: string) => this.isCloneBase(id),
      cloneOn: (id: string, except?: string) => this.cloneOn(id, except),
      snapshotBusy: (snap: SnapshotRecord, subject: string, then: string) => this.snapshotBusy(snap, subject, then),
      refuseDelete: (snap: SnapshotRecord) => { this.refuseDelete(snap); this.refuseDeleteLocked(snap); },
      shuttingDown: () => this.closing,
      deleteBatch: () => this.deleteBatch,
    };
    this.policies = new Policies(this, internals);
    this.groups = new SnapshotGroups(this, internals);
    this.offsite = new Offsite({
      catalog, store, storeLock: this.storeLock, diskLocks: this.diskLocks, jobs: this.jobs, imageRoots, log,
      assertOpen: () => this.assertOpen(), resolveDisk: (r) => this.resolveDisk(r), resolveSnapshot: (r, d) => this.resolveSnapshot(r, d),
      publicSnapshot: (s) => this.publicSnapshot(s), pin: (id) => this.pinSnapshot(id),
      quota: () => this.quota, now: () => this.clock(), repair: this.repair,
      releaseOrphans: (digests) => {
        if (digests.length === 0) return;
        this.catalog.txn(() => { for (const d of digests) this.catalog.markFree(d); });
        this.scheduleSweep();
      },
      policiesReplicatingTo: (name) => this.policies.list().filter((p) => p.replicateTo === name).map((p) => p.name),
    }, replication);
    this.volumes = new CowVolumes({ catalog, dataDir, storeDir: store.dir, granuleDir: store.granuleDir, blockSize: catalog.blockSize, log });
    this.exports = new Exports({
      catalog, storeDir: store.dir, granuleDir: store.granuleDir, blockSize: catalog.blockSize, log, volumes: this.volumes,
      assertOpen: () => this.assertOpen(), resolveSnapshot: (r) => this.resolveSnapshot(r), resolveDisk: (r) => this.resolveDisk(r),
      pin: (id) => this.pinSnapshot(id),
    });
    this.cow = new CowDisks({ catalog, volumes: this.volumes, exports: this.exports, storeLock: this.storeLock, log, threads, blockSize: catalog.blockSize, repair: this.repair });
    this.maintenance = { catalog, store, storeLock: this.storeLock, repair: this.repair, log, threads, catalogHold: () => this.catalogHold };
    this.rollbacks = new ImageRollbacks({ catalog, storeDir: store.dir, blockSize: catalog.blockSize, threads, log, imageRoots });
  }

  /**
   * The base of a copy-on-write disk: its blocks are what the disk reads wherever it was not
   * written. `except`: a disk not counted as a holder.
   */
  private isCloneBase(snapshotId: string, except?: string): boolean {
    return this.cloneOn(snapshotId, except) !== undefined;
  }

  /** A copy-on-write disk resting on the snapshot (not `except`), if any. */
  private cloneOn(snapshotId: string, except?: string): DiskRecord | undefined {
    return this.catalog.allDisks().find((d) => d.cow?.baseSnapshotId === snapshotId && d.id !== except);
  }

  /**
   * SnapshotHasClones when a copy-on-write disk rests on `s`. `removing`: a disk being removed
   * with its snapshots, whose own base goes with it; it is still refused when another disk rests
   * on that snapshot too (a clone --cow of the disk's latest snapshot).
   */
  private refuseCloneBase(s: SnapshotRecord, removing?: string): void {
    const clone = this.cloneOn(s.id, removing);
    if (clone) {
      throw new BlocksnapError('SnapshotHasClones',
        `snapshot ${s.id} is the base of copy-on-write disk ${clone.name}; remove that disk (or snapshot it, which moves its base) first`,
        { snapshotId: s.id, diskId: clone.id });
    }
  }

  /**
   * SnapshotBusy for a pinned snapshot, saying who holds it and how to let go: an export is
   * stopped by the operator (it never ends by itself); a job reading it (a clone, a stream
   * export, a replication) ends, or is cancelled.
   */
  private snapshotBusy(s: SnapshotRecord, subject: string, then: string): BlocksnapError {
    const exported = this.exports.ofSnapshot(s.id);
    if (exported.length > 0) {
      return new BlocksnapError('SnapshotBusy',
        `${subject} is exported as ${exported.join(', ')}; stop the export first (${exported.map((e) => `blocksnap export stop ${e}`).join('; ')}), then ${then}`,
        { snapshotId: s.id, exports: exported });
    }
    return new BlocksnapError('SnapshotBusy',
      `${subject} is being read by a running job (a clone, a stream export or a replication); ${then} once it has ended ` +
      '(`blocksnap job list` shows it; `blocksnap job cancel JOB` stops it)', { snapshotId: s.id });
  }

  /** Keeps a snapshot from being deleted while a job reads it; returns the (idempotent) unpin. */
  private pinSnapshot(id: string): () => void {
    this.pins.set(id, (this.pins.get(id) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pins.get(id) ?? 1) - 1;
      if (n <= 0) this.pins.delete(id); else this.pins.set(id, n);
    };
  }

  static async open(o: EngineOptions): Promise<Engine> {
    const dataDir = resolve(o.dataDir);
    const blockSize = o.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!isValidBlockSize(blockSize)) throw new BlocksnapError('InvalidArgument', `block size ${blockSize} must be a power of two from 64 KiB to 64 MiB`);
    if (!Array.isArray(o.imageRoots) || o.imageRoots.length === 0) throw new BlocksnapError('InvalidArgument', 'at least one image root is required');
    const roots = resolveRoots(o.imageRoots);
    checkDataDir(dataDir);
    const lock = lockDataDir(dataDir);
    let unfence = (): void => undefined;
    let catalog: Catalog | undefined;
    try {
      unfence = fenceDataDirOf(dataDir);
      const hadBlocks = storeInUse(dataDir);
      if (!refuseMissingCatalog(dataDir, o.newCatalog === true, o.logger ?? silent) && !catalogAbsent(dataDir)) probeCatalog(dataDir, o.logger ?? silent);
      catalog = Catalog.open(dataDir, blockSize, { log: o.logger ?? silent });
      const store = new BlockStore(dataDir);
      const engine = new Engine(dataDir, roots, catalog, store, lock, o.threads, o.logger ?? silent, o.replication);
      // Before recovery, which removes copy-on-write layer files the catalog does not list.
      engine.catalogHold = pairCatalog(catalog, dataDir, hadBlocks, engine.log);
      engine.unfence = unfence;
      engine.quota = resolveQuota(o.snapshotQuota);
      if (o.now) engine.clock = o.now;
      if (o.deleteBatch !== undefined) engine.deleteBatch = { ...DELETE_BATCH, snapshots: Math.max(1, Math.floor(o.deleteBatch)) };
      await engine.recover();
      const groups = engine.groups.recover();
      if (groups.length > 0) engine.log.warn({ groups }, 'groups left half made by an unclean stop are now error; their members were removed');
      // In the background, as after a delete: a crash after a large delete leaves a free list that
      // takes minutes to unlink, and nothing needs it gone first (a snapshot or gc waits for the
      // store lock the sweep holds).
      engine.scheduleSweep();
      return engine;
    } catch (err) {
      if (catalog) await catalog.close();
      unfence();
      lock.release();
      throw err;
    }
  }

  get blockSize(): number { return this.catalog.blockSize; }

  /**
   * Resolves what a crash left: snapshots still `creating` become `error` (they never committed a
   * map, so they hold no references; blocks they wrote are orphans for gc), jobs still `running`
   * become `interrupted`, temp files removed (nothing writes yet); freed blocks are swept once the engine is open.
   * Interrupted rollbacks stay journaled on their disk until rerun; the new image an interrupted
   * qcow2 rollback was writing beside its disk is removed (a rerun writes it afresh anyway), and
   * the journal of one that never touched its image goes too, the job's error saying so: a qcow2
   * one whose disk file is still the one journaled (cut off before its rename), a raw one whose
   * journal says no write had begun (cut off while it compared and checked).
   */
  private async recover(): Promise<void> {
    const stale = this.catalog.allSnapshots().filter((s) => s.status === 'creating');
    this.catalog.txn(() => {
      for (const s of stale) {
        this.catalog.putSnapshot({ ...s, status: 'error', error: { code: 'Interrupted', message: 'the daemon stopped while this snapshot was being created' } });
      }
    });
    // Partial files first: once a job is marked interrupted, a crash right after must not strand them.
    const partialFiles = await removeInterruptedPartials(this.catalog.allJobs().filter((j) => j.state === 'running'));
    const interrupted = this.jobs.recover();
    const jobs = interrupted.length;
    this.offsite.replication.releaseInterrupted(interrupted);
    // A catalog that is not the store's does not list the layers of disks it never heard of.
    const layers = this.catalogHold === null ? this.volumes.removeUnlisted() : 0;
    this.volumes.warmWrittenCounts();
    const tmp = await this.store.removeTempFiles();
    const pendingFree = this.catalog.freeCount(); // swept once open (Engine.open)
    const pending = this.catalog.allDisks().filter((d) => d.pendingRollback);
    let rollbackTempFiles = 0;
    for (const d of pending) {
      if (d.format !== 'qcow2') continue;
      try {
        rollbackTempFiles += await removeRollbackLeftovers(d.path, this.imageRoots, d.pendingRollback!.tempName);
      } catch (err) {
        this.log.warn({ err, diskId: d.id }, 'could not remove the new image of an interrupted rollback; a rerun of the rollback removes it');
      }
    }
    // A rollback whose job ended (failed, or cancelled by a clean stop) left its journal knowingly;
    // only one whose job this start marked interrupted was cut off by an unclean stop.
    const cutOffJobs = new Set(interrupted.map((j) => j.id));
    const cutOff = (d: DiskRecord): boolean => cutOffJobs.has(d.pendingRollback!.jobId);
    const untouched = pending.filter((d) => this.rollbacks.clearUntouchedRollback(d, d.pendingRollback!.jobId,
      cutOff(d) ? 'interrupted by an unclean stop' : 'that had stopped', true));
    const stillPending = pending.filter((d) => !untouched.includes(d));
    if (stale.length || jobs || tmp || pending.some(cutOff) || layers || partialFiles) {
      const named = interrupted.slice(0, RECOVERY_JOBS_NAMED).map((j) => ({ id: j.id, kind: j.kind }));
      const orphans = stale.length > 0 || interrupted.some((j) => STORING_KINDS.has(j.kind));
      this.log.warn({
        snapshots: stale.map((s) => s.id), interruptedJobs: jobs, interrupted: named, tempFiles: tmp, pendingRollbacks: stillPending.filter(cutOff).map((d) => d.id), rollbackTempFiles,
        rollbacksCleared: untouched.map((d) => d.id), unlistedLayerFiles: layers, partialFiles, pendingFree,
      }, 'recovered from an unclean stop' +
        (jobs > 0 ? ` that interrupted ${named.map((j) => `${j.kind} ${j.id}`).join(', ')}${jobs > named.length ? ` and ${jobs - named.length} more jobs` : ''}` : '') +
        (orphans ? '; the interrupted snapshots and imports may have left block files no snapshot references: store verify counts them, store gc removes them' : ''));
    }
    for (const d of stillPending) {
      const p = d.pendingRollback!;
      this.log.warn({ diskId: d.id, snapshotId: p.snapshotId, jobId: p.jobId },
        `${rollbackIncomplete(d).message}; until then the disk refuses snapshots`);
    }
  }

  /** Cancels running jobs, waits for them to stop at a safe point, then closes the catalog. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.exports.stopAll();
    await this.jobs.shutdown();
    await this.policies.settle(); // a run's retention and its event, after its snapshot's job
    await this.offsite.replication.settleReleases(); // ended replications' leases, deleted after their result
    await this.volumes.closeAll();
    while (this.sweeping) await this.sweeping;
    this.repair.close();
    await this.catalog.close();
    this.unfence();
    this.lock.release();
  }

  private assertOpen(): void {
    if (this.closing) throw new BlocksnapError('ShuttingDown', 'the engine is shutting down');
  }

  // ---------------------------------------------------------------- disks

  /** `user`: the client's rights, when it is neither root nor the daemon's user (user-access.ts). */
  async addDisk(p: { path: string; name?: string; format?: ImageFormat }, user?: UserAccess): Promise<Disk> {
    try {
      return this.addDiskAs(p, user);
    } finally {
      // What the user's rights were decided on was held for the reads here (inspectImage).
      user?.release();
    }
  }

  private addDiskAs(p: { path: string; name?: string; format?: ImageFormat }, user?: UserAccess): Disk {
    this.assertOpen();
    const path = resolvedFor(user, p.path, () => resolveExistingImage(p.path, this.imageRoots));
    // Read for snapshots, written by rollbacks.
    user?.checkFile(path, p.path, ['read', 'write']);
    if (p.format !== undefined && p.format !== 'raw' && p.format !== 'qcow2') {
      throw new BlocksnapError('InvalidArgument', `format must be "raw" or "qcow2", not ${JSON.stringify(p.format)}`);
    }
    const format = p.format ?? detectFormat(path, user?.identity(path));
    const facts = this.checkImage(p.path, path, format, user);
    const same = this.registeredAs(path);
    if (same !== undefined && p.format === 'raw' && same.format === 'raw' && same.path === path && (p.name === undefined || p.name === same.name)) {
      return this.confirmRaw(same);
    }
    if (same !== undefined) throw alreadyRegistered(path, same);
    const taken = (n: string): boolean => this.catalog.allDisks().some((d) => d.name === n);
    let name: string;
    if (p.name !== undefined) {
      name = validateName('disk', p.name);
      if (taken(name)) throw new BlocksnapError('NameTaken', `a disk named ${JSON.stringify(name)} exists already`);
    } else {
      name = uniqueName(nameFromPath(basename(path)), taken);
    }
    const rec: DiskRecord = {
      id: newId('d'), name, path, format, sizeBytes: facts.sizeBytes, createdAt: new Date().toISOString(),
      headSnapshotId: null, pendingRollback: null, cow: null, formatSource: p.format !== undefined ? 'given' : 'detected',
      ...(p.path !== path ? { givenPath: p.path } : {}),
      ...(user !== undefined ? { registeredBy: user.credentials } : {}),
    };
    this.catalog.txn(() => this.catalog.putDisk(rec));
    this.log.info({ diskId: rec.id, path }, 'disk registered');
    return this.publicDisk(rec);
  }

  /**
   * What `disk add` and `disk relocate` check of the image `given` names, whose real path is
   * `path`: its format and chain (inspectImage), its size, and that QEMU opening `given` reads the
   * same backing files as the engine. No setuid or setgid bit (checkNotSetId); for `user`, each
   * backing file must be readable by it.
   */
  private checkImage(given: string, path: string, format: ImageFormat, user?: UserAccess): Omit<ImageFacts, 'sizeBytes'> & { sizeBytes: number } {
    checkNotSetId(path);
    const facts = inspectImage(path, format, this.imageRoots, user);
    const sizeBytes = checkBlockCount(path, facts.sizeBytes, this.blockSize);
    if (facts.qcow2 !== null) checkBackingAsGiven(given, path, facts.qcow2);
    return { ...facts, sizeBytes };
  }

  /**
   * Points an image disk at the image `given` names, keeping its snapshots: for an image moved
   * (a storage move that left a symlink behind) or replaced under its name (a libvirt external
   * snapshot's overlay, a retargeted jailer link), which every job refuses until then
   * (checkDiskPath). The image must pass what `disk add` checks and have the disk's format
   * (checkRelocatedFormat). Snapshots stay valid: they hold the guest's blocks by content, and the
   * next one is an increment over the head whatever file it reads, so one of a different image
   * only records more changed blocks. Nothing else of the disk depends on its file but an
   * unfinished rollback's journal (the file it was replacing, the new image beside it), so a disk
   * with one is refused. Under the disk lock: no job of the disk runs meanwhile.
   */
  relocateDisk(ref: string, given: string, user?: UserAccess): Disk {
    try {
      return this.relocateDiskAs(ref, given, user);
    } finally {
      user?.release();
    }
  }

  private relocateDiskAs(ref: string, given: string, user?: UserAccess): Disk {
    this.assertOpen();
    const disk = this.resolveDisk(ref);
    if (disk.cow) {
      throw new BlocksnapError('InvalidArgument', `disk ${disk.name} is a copy-on-write disk, whose overlay files the daemon keeps; it has no image to relocate`, { diskId: disk.id });
    }
    this.refuseUnfinishedRollback(disk, 'relocating it');
    const path = resolvedFor(user, given, () => resolveExistingImage(given, this.imageRoots));
    user?.checkFile(path, given, ['read', 'write']);
    checkRelocatedFormat(disk, path, user?.identity(path));
    const facts = this.checkImage(given, path, imageFormatOf(disk), user);
    const same = this.registeredAs(path);
    if (same !== undefined && same.id !== disk.id) throw alreadyRegistered(path, same);
    const release = this.diskLocks.acquire(disk.id, `relocate:${disk.id}`);
    try {
      // Root or the daemon's user relocating the disk takes it over; another client's rights replace those recorded.
      const { givenPath: _was, registeredBy: _by, ...rest } = this.catalog.getDisk(disk.id)!;
      const moved: DiskRecord = {
        ...rest, path, sizeBytes: facts.sizeBytes, ...(given !== path ? { givenPath: given } : {}), ...(user !== undefined ? { registeredBy: user.credentials } : {}),
      };
      this.catalog.txn(() => this.catalog.putDisk(moved));
      this.log.info({ diskId: disk.id, from: disk.path, path, givenPath: moved.givenPath }, 'disk relocated');
      return this.publicDisk(moved);
    } finally {
      release();
    }
  }

  /**
   * `disk add PATH --format raw` of a disk registered as raw: records that raw is the operator's
   * choice, so that an image whose guest wrote the qcow2 magic at its start keeps being read as
   * raw (checkFormatKept), with its snapshots. Nothing else changes.
   */
  private confirmRaw(disk: DiskRecord): Disk {
    if (disk.formatSource !== 'given') {
      this.catalog.txn(() => this.catalog.putDisk({ ...this.catalog.getDisk(disk.id)!, formatSource: 'given' }));
      this.log.info({ diskId: disk.id }, 'disk format confirmed as raw by the operator');
    }
    return this.publicDisk(this.catalog.getDisk(disk.id)!);
  }

  /**
   * The disk whose image is this file. Real paths miss hard links, and two disk ids on one file
   * would let the per-disk lock run a snapshot and a rollback of that file at once, so the
   * (device, inode) of every registered image counts too.
   */
  private registeredAs(realPath: string): DiskRecord | undefined {
    const disks = this.catalog.allDisks().filter((d) => d.cow === null);
    const byPath = disks.find((d) => d.path === realPath);
    if (byPath !== undefined) return byPath;
    const id = fileIdentity(realPath);
    if (id === null) return undefined;
    return disks.find((d) => {
      const other = fileIdentity(d.path);
      return other !== null && other.dev === id.dev && other.ino === id.ino;
    });
  }

  listDisks(): Disk[] {
    return this.catalog.allDisks().sort((a, b) => a.createdAt.localeCompare(b.createdAt)).map((d) => this.publicDisk(d));
  }

  getDisk(ref: string): Disk {
    return this.publicDisk(this.resolveDisk(ref));
  }

  /**
   * Unregisters a disk. An image file stays; a copy-on-write disk's overlay files go, so one
   * holding writes no snapshot has is refused unless `discardWrites` (for an image disk the
   * command loses nothing, and the same command must not lose a COW disk's data silently).
   */
  async removeDisk(ref: string, o: { deleteSnapshots?: boolean; discardWrites?: boolean } = {}): Promise<Disk> {
    this.assertOpen();
    const disk = this.resolveDisk(ref);
    const snaps = this.catalog.snapshotsOfDisk(disk.id);
    if (snaps.length > 0 && !o.deleteSnapshots) {
      throw new BlocksnapError('DiskHasSnapshots', `disk ${disk.name} has ${snaps.length} snapshot(s); delete them first, or remove the disk with its snapshots (disk remove --delete-snapshots)`);
    }
    const pinned = snaps.find((s) => this.pins.has(s.id));
    if (pinned) throw this.snapshotBusy(pinned, `snapshot ${pinned.id} (${pinned.name}) of disk ${disk.name}`, 'remove the disk');
    const member = snaps.find((s) => s.groupId);
    if (member) throw snapshotInGroup(member);
    const served = this.exports.ofDisk(disk.id);
    if (served.length > 0) throw new BlocksnapError('DiskExported', `disk ${disk.name} is exported as ${served[0]!.name}; stop the export first`, { export: served[0]!.name });
    // By the map bits, not the data files' space: a TRIM or zeroes set bits over holes.
    const written = disk.cow ? this.volumes.writtenBytes(disk) : 0;
    if (written !== 0 && !o.discardWrites) {
      const what = written === null ? 'writes whose extent its unreadable layer maps hide' : `${formatBytes(written)} written`;
      throw new BlocksnapError('DiskHasWrites',
        `copy-on-write disk ${disk.name} holds ${what} since ${disk.headSnapshotId ? 'its last snapshot' : 'it was cloned'}, which removing it deletes; ` +
        `snapshot it first (blocksnap snapshot create ${disk.name}), or remove it with them (disk remove --discard-writes)`,
        { diskId: disk.id, writtenBytes: written, overlayBytes: this.volumes.overlayBytes(disk.id, disk.cow!.layers) });
    }
    // Its own base goes with the disk; a base of another COW disk stays (which may be its own base too).
    for (const s of snaps) this.refuseCloneBase(s, disk.id);
    const release = this.diskLocks.acquire(disk.id, `remove:${disk.id}`);
    try {
      const before = this.publicDisk(disk);
      this.catalog.txn(() => {
        // Leaves first: a leaf's removal pushes nothing down, so the whole chain costs O(entries).
        const chain = this.catalog.snapshotsOfDisk(disk.id);
        const links = new ChainLinks(chain);
        for (const s of chain.reverse()) removeFromChain(this.catalog, this.catalog.getSnapshot(s.id)!, links);
        this.catalog.deleteDisk(disk.id);
      });
      if (disk.cow) await this.volumes.removeDisk(disk.id);
      this.log.info({ diskId: disk.id, snapshots: snaps.length }, 'disk removed');
      this.scheduleSweep();
      return before;
    } finally {
      release();
    }
  }

  // ---------------------------------------------------------------- snapshots

  startSnapshot(diskRef: string, o: SnapshotCreateOptions = {}): Job {
    this.assertOpen();
    const disk = this.resolveDisk(diskRef);
    this.refuseUnfinishedRollback(disk);
    const now = this.clock();
    const taken = (n: string): boolean => this.catalog.snapshotsOfDisk(disk.id).some((s) => s.name === n);
    let name: string;
    if (o.name !== undefined) {
      name = o.type === 'auto' ? validateName('snapshot', o.name) : validateManualSnapshotName(o.name);
      const holder = this.catalog.snapshotsOfDisk(disk.id).find((s) => s.name === name);
      if (holder) throw snapshotNameTaken(disk.name, holder);
    } else {
      name = uniqueName(defaultSnapshotName(now), taken);
    }
    const description = validateDescription(o.description ?? '');
    const tags = withTags({}, o.tags ?? {});
    const type = o.type ?? 'manual';
    this.checkSnapshotSize(disk.id);
    const jobId = newId('j');
    const release = this.diskLocks.acquire(disk.id, jobId);
    let snap: SnapshotRecord;
    try {
      snap = {
        id: newId('s'), diskId: disk.id, name, description, status: 'creating', type,
        parentId: disk.headSnapshotId, createdAt: now.toISOString(), completedAt: null,
        sizeBytes: 0, blockSize: this.blockSize, blockCount: 0, logicalBytes: 0, changedBlocks: 0, newBytes: 0,
        error: null, jobId, tags, groupId: o.groupId ?? null,
      };
      // Over quota, a manual snapshot is refused, and so is an automatic one for which too few
      // older ones could make room. That room is made only once it is available (evictOverQuota):
      // a snapshot that fails, is cancelled or is cut off by a crash must not cost a good one.
      // A copy-on-write disk's own base moves to the new snapshot in the same commit, so by the
      // time the room is made it holds nothing: only other disks resting on it keep it.
      quotaEvictions(disk.name, this.catalog.snapshotsOfDisk(disk.id), type, this.quota, (s) => this.quotaEvictable(disk, s, disk.id), disk.cow?.baseSnapshotId ?? null);
      this.catalog.txn(() => {
        this.catalog.putSnapshot(snap);
        // A group member commits with its place in the group's list: a crash between two commits
        // would leave a snapshot naming a group that does not list it, which its group's recovery
        // and deletion would not find.
        if (snap.groupId) this.model.addGroupMember(snap.groupId, snap.id);
      });
    } catch (err) {
      release();
      throw err;
    }
    return this.jobs.start(jobId, 'snapshot', { diskId: disk.id, snapshotId: snap.id, target: null }, async (ctl) => {
      try {
        const done = await this.runSnapshot(disk, snap, ctl, o.instant);
        if (type === 'auto') {
          const evicted = this.evictOverQuota(disk.id, snap.id, jobId);
          o.quotaEvicted?.(evicted);
        }
        return done;
      } finally {
        release();
      }
    });
  }

  /**
   * Whether the automatic quota may delete `s` now, as far as the engine knows (quotas.ts adds:
   * not being created, not a group member). `baseMoving`: the disk whose base the snapshot being
   * started replaces.
   */
  private quotaEvictable(disk: DiskRecord, s: SnapshotRecord, baseMoving?: string): boolean {
    return !this.pins.has(s.id) && disk.pendingRollback?.snapshotId !== s.id && !this.isCloneBase(s.id, baseMoving);
  }

  /**
   * Brings the disk back within its automatic quota once automatic snapshot `committed` is
   * available, under the disk lock its job holds: failed automatic snapshots first, then the
   * oldest available ones. A transaction of its own after the snapshot's commit, so a pure
   * deletion (it may use the catalog's reserve on a full data dir); a crash between the two
   * leaves the disk one over quota, which the next automatic snapshot's commit deletes with its
   * own excess. Never throws: the snapshot is committed whatever happens here, and what could not
   * go now is left to that next commit. Returns the ids deleted.
   */
  private evictOverQuota(diskId: string, committed: string, jobId: string): string[] {
    try {
      const ids = this.catalog.txn(() => {
        const disk = this.catalog.getDisk(diskId);
        if (!disk) return [];
        const evict = quotaExcess(this.catalog.snapshotsOfDisk(diskId), this.quota, committed, (s) => this.quotaEvictable(disk, s));
        // Re-read each: removing one re-parents its children.
        const links = ChainLinks.of(this.catalog, diskId);
        for (const s of evict) removeSnapshot(this.catalog, this.catalog.getSnapshot(s.id)!, links);
        return evict.map((s) => s.id);
      });
      if (ids.length > 0) {
        this.log.info({ jobId, diskId, snapshotId: committed, evicted: ids }, 'automatic snapshot quota: deleted failed and oldest automatic snapshots');
        this.scheduleSweep();
      }
      return ids;
    } catch (err) {
      this.log.warn({ err, jobId, diskId, snapshotId: committed }, 'automatic snapshot quota: could not delete the excess now; the next automatic snapshot does');
      return [];
    }
  }

  private async runSnapshot(disk: DiskRecord, snap: SnapshotRecord, ctl: JobControl, instant?: SharedInstant): Promise<Snapshot> {
    if (disk.cow) return this.runCowSnapshot(disk, snap, ctl, instant);
    const t0 = performance.now();
    let releaseStore: (() => void) | undefined;
    let written: Buffer | undefined;
    let watch: ScanWatch | undefined;
    // The files its registrant's rights were decided on, held until the scan has opened them.
    const user = registrantAccess(disk);
    try {
      // Inside the try: a cancel while queued for the lock removes the record like any other.
      releaseStore = await this.storeLock.acquireShared(ctl.signal);
      const path = checkDiskPath(disk, this.imageRoots, user);
      const format = imageFormatOf(disk);
      const { backingChain, sizeBytes } = inspectDiskImage(disk, path, this.imageRoots, user);
      const imageId = user?.identity(path);
      checkBlockCount(path, sizeBytes, this.blockSize);
      // A VM writing the image or a backing file during the scan makes the snapshot crash-consistent.
      const scanWatch = new ScanWatch(path, backingChain, disk.name);
      watch = scanWatch;
      const parent = snap.parentId ? this.catalog.getSnapshot(snap.parentId) : undefined;
      const parentView = parent ? readView(this.catalog, parent) : null;
      const tScan = performance.now();
      const scan = await scanImage({
        imagePath: path, format, ...(format === 'qcow2' ? { backingChain } : {}), ...(imageId ? { imageId } : {}), storeDir: this.store.dir, granuleDir: this.store.granuleDir, blockSize: this.blockSize,
        ...(parentView ? { parentDigests: parentView } : {}), damagedDigests: this.repair.forScan(),
        ...(this.threads ? { threads: this.threads } : {}),
        onProgress: (d, t) => ctl.progress(d, t), signal: ctl.signal,
      });
      written = scan.writtenDigests;
      checkSizeKept(path, format, scan.sizeBytes);
      const tScanned = performance.now();
      // Every block of the image was hashed, and each listed as damaged was written again: only
      // one found damaged while the scan ran can be left (block-repair.ts).
      const repaired = hexDigests(scan.repairedDigests);
      const retry = 'take the snapshot again, which writes it again from the image';
      await this.repair.checkBeforeCommit(scan.digests, repaired, retry, ctl);
      // Before the transaction: naming the overlays over the image reads their headers.
      const warnings = scanWatch.warnings(() => backingDependents(this.catalog, disk, path, this.imageRoots).map((d) => d.name).sort());
      const done = this.catalog.txn(() => {
        this.repair.settle(scan.digests, repaired, retry);
        const cur = this.catalog.getSnapshot(snap.id);
        if (cur?.status !== 'creating') throw new BlocksnapError('Internal', `snapshot ${snap.id} changed state during its job`);
        const consistency = scanWatch.consistency();
        const sized: SnapshotRecord = { ...cur, sizeBytes: scan.sizeBytes, blockCount: scan.blockCount, consistency, ...(warnings.length > 0 ? { warnings } : {}) };
        const stats = commitDelta(this.catalog, sized, scan.digests, parentView);
        const available: SnapshotRecord = { ...sized, ...stats, status: 'available', completedAt: new Date().toISOString() };
        this.catalog.putSnapshot(available);
        const d = this.catalog.getDisk(disk.id)!;
        this.catalog.putDisk({ ...d, headSnapshotId: snap.id, sizeBytes: scan.sizeBytes });
        return available;
      });
      const ms = (a: number, b: number): number => Math.round(b - a);
      this.log.info({
        jobId: ctl.job.id, snapshotId: snap.id, diskId: disk.id, changedBlocks: done.changedBlocks, newBytes: done.newBytes, bytesRead: scan.bytesRead,
        ...(repaired.length > 0 ? { repairedBlocks: repaired } : {}),
        prepareMs: ms(t0, tScan), scanMs: ms(tScan, tScanned), commitMs: ms(tScanned, performance.now()),
      }, 'snapshot available');
      return this.publicSnapshot(done);
    } catch (err) {
      const e = toBlocksnapError(err);
      throw this.failSnapshot(snap.id, ctl.job.id, watch ? watch.failure(e) : e, written ?? writtenDigestsOf(err));
    } finally {
      user?.release();
      releaseStore?.();
      this.scheduleSweep();
    }
  }

  private async runCowSnapshot(disk: DiskRecord, snap: SnapshotRecord, ctl: JobControl, instant?: SharedInstant): Promise<Snapshot> {
    try {
      return this.publicSnapshot(await this.cow.snapshot(disk, snap, ctl, instant));
    } catch (err) {
      throw this.failSnapshot(snap.id, ctl.job.id, toBlocksnapError(err), writtenDigestsOf(err));
    } finally {
      this.scheduleSweep();
    }
  }

  /**
   * A cancelled snapshot disappears; a failed one stays visible as `error` with the reason. The
   * blocks its scan stored (`written`) that nothing references go on the free list in the same
   * transaction, for the sweep its job's end starts: they are invisible to `store stats`, and on
   * a filesystem a NoSpace filled, they are the space the operator needs back. One another
   * snapshot committed meanwhile stays (markFree and the sweep both check). Returns the error to
   * throw: a NoSpace one says what became of that space.
   */
  private failSnapshot(id: string, jobId: string, e: BlocksnapError, written?: Buffer): BlocksnapError {
    const digests: Buffer[] = [];
    for (let o = 0; written && o < written.length; o += DIGEST_SIZE) digests.push(written.subarray(o, o + DIGEST_SIZE));
    let freed = 0;
    let told = e;
    try {
      this.catalog.txn(() => {
        freed = 0;
        if (digests.length > 0) this.catalog.freesSpace(); // may use the catalog's reserve on a full filesystem
        // A digest can come twice (two writers of one block without RENAME_NOREPLACE); count it once.
        const seen = new Set<string>();
        for (const d of digests) {
          const hex = d.toString('hex');
          if (seen.has(hex) || this.catalog.isReferenced(d)) continue;
          seen.add(hex);
          this.catalog.markFree(d);
          freed++;
        }
        told = e.code === 'NoSpace' && freed > 0
          ? new BlocksnapError(e.code, `${e.message}; the ${freed} block(s) this snapshot had stored are freed again and unlinked shortly`, e.details)
          : e;
        const cur = this.catalog.getSnapshot(id);
        if (cur?.status !== 'creating') return;
        if (e.code === 'Cancelled') this.catalog.deleteSnapshotRecord(cur);
        else {
          this.catalog.putSnapshot({ ...cur, status: 'error', error: { code: told.code, message: told.message } });
          if (cur.type === 'manual') for (const old of failedManualPast(this.catalog.snapshotsOfDisk(cur.diskId))) this.catalog.deleteSnapshotRecord(old);
        }
      });
    } catch (txnErr) {
      // Left `creating`, the snapshot becomes `error` at the next start (recover()); its blocks
      // stay in the store, unreferenced, until `store gc`.
      this.log.error({ err: txnErr, jobId, snapshotId: id, orphanedBlocks: digests.length }, 'could not record the snapshot failure');
      if (digests.length === 0) return e;
      return e.code === 'NoSpace'
        ? new BlocksnapError(e.code, `${e.message}; the ${digests.length} block(s) this snapshot had stored could not be freed: run blocksnap store gc to give their space back`, e.details)
        : e;
    }
    if (freed > 0) this.log.info({ jobId, snapshotId: id, freedBlocks: freed }, 'blocks of the failed or cancelled snapshot freed');
    return told;
  }

  listSnapshots(diskRef?: string): Snapshot[] {
    const snaps = diskRef === undefined
      ? this.catalog.allSnapshots().sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
      : this.catalog.snapshotsOfDisk(this.resolveDisk(diskRef).id);
    const children = new Map<string, SnapshotRecord[]>();
    for (const s of snaps) {
      if (s.parentId === null) continue;
      const list = children.get(s.parentId);
      if (list) list.push(s); else children.set(s.parentId, [s]);
    }
    return snaps.map((s) => this.publicSnapshot(s, children.get(s.id) ?? []));
  }

  getSnapshot(ref: string): Snapshot {
    return this.publicSnapshot(this.resolveSnapshot(ref));
  }

  /** Sets tags (key=value; an existing key takes the new value). */
  tagSnapshot(ref: string, tags: Record<string, string>): Snapshot {
    return this.retag(ref, (cur) => withTags(cur, tags));
  }

  /** Removes tags by key; a key the snapshot does not have is ignored. */
  untagSnapshot(ref: string, keys: string[]): Snapshot {
    return this.retag(ref, (cur) => withoutTags(cur, keys));
  }

  private retag(ref: string, change: (cur: Record<string, string>) => Record<string, string>): Snapshot {
    this.assertOpen();
    const id = this.resolveSnapshot(ref).id;
    const next = this.catalog.txn(() => {
      const cur = this.catalog.getSnapshot(id);
      if (!cur) throw new BlocksnapError('SnapshotNotFound', `no snapshot ${JSON.stringify(ref)}`);
      const rec = { ...cur, tags: change(cur.tags ?? {}) };
      this.catalog.putSnapshot(rec);
      return rec;
    });
    return this.publicSnapshot(next);
  }

  async deleteSnapshot(ref: string): Promise<Snapshot> {
    this.assertOpen();
    const snap = this.resolveSnapshot(ref);
    this.refuseDelete(snap);
    const release = this.diskLocks.acquire(snap.diskId, `delete:${snap.id}`);
    try {
      this.refuseDeleteLocked(snap);
      const before = this.publicSnapshot(snap);
      const freed = this.catalog.txn(() => removeSnapshot(this.catalog, snap));
      this.log.info({ snapshotId: snap.id, freedBlocks: freed.length }, 'snapshot deleted');
      this.scheduleSweep();
      return before;
    } finally {
      release();
    }
  }

  /** Why `snap` may not be deleted now: a group member, the base of a COW disk, pinned. */
  private refuseDelete(snap: SnapshotRecord): void {
    if (snap.groupId) throw snapshotInGroup(snap);
    this.refuseCloneBase(snap);
    if (this.pins.has(snap.id)) throw this.snapshotBusy(snap, `snapshot ${snap.id} (${snap.name})`, 'delete it');
  }

  /**
   * What only the disk lock's holder may ask: whether `snap` is the target of an interrupted
   * rollback (a running one holds the lock: DiskBusy first).
   */
  private refuseDeleteLocked(snap: SnapshotRecord): void {
    const disk = this.catalog.getDisk(snap.diskId)!;
    if (disk.pendingRollback?.snapshotId === snap.id) {
      throw new BlocksnapError('SnapshotBusy', `snapshot ${snap.id} is the target of an interrupted rollback of disk ${disk.name}; rerun the rollback (or abandon it: blocksnap rollback ${disk.name} --abandon) first`);
    }
  }

  // ---------------------------------------------------------------- rollback and clone

  /**
   * `force` rolls back even while a QEMU process holds the image, or, for a copy-on-write disk,
   * while its writable export has NBD clients, which are dropped (DiskInUse otherwise).
   */
  startRollback(diskRef: string, snapRef: string, o: { force?: boolean } = {}): Job {
    this.assertOpen();
    const disk = this.resolveDisk(diskRef);
    const snap = this.resolveSnapshot(snapRef, disk.id, true);
    if (snap.diskId !== disk.id) {
      throw new BlocksnapError('SnapshotNotFound', `snapshot ${snap.id} belongs to another disk, not to ${disk.name}; clone it instead`);
    }
    requireAvailable(snap);
    const jobId = newId('j');
    // The disk lock first: a job of this daemon on the disk holds image locks of its own, which
    // the in-use probe would report as a QEMU process (DiskInUse) instead of DiskBusy.
    const release = this.diskLocks.acquire(disk.id, jobId);
    if (disk.cow) {
      let dropped: Promise<void>;
      try {
        dropped = this.cow.checkRollback(disk, o.force === true);
      } catch (err) {
        release();
        throw err;
      }
      return this.jobs.start(jobId, 'rollback', { diskId: disk.id, snapshotId: snap.id, target: null }, async (ctl) => {
        try {
          return await this.cow.rollback(disk, snap, ctl, dropped);
        } finally {
          release();
        }
      });
    }
    try {
      const path = checkDiskPath(disk, this.imageRoots);
      checkRollbackTarget(path, disk.format, { snapshot: snap, leftover: disk.pendingRollback?.tempName });
      // The new image names the same backing file: a chain a snapshot would refuse is refused
      // here too, before the job starts (the job checks it again before the journal: image-rollback.ts).
      if (disk.format === 'qcow2') inspectDiskImage(disk, path, this.imageRoots);
      const inUse = checkNotInUse(path, o.force === true);
      if (inUse) this.log.warn({ jobId, diskId: disk.id, holder: inUse }, 'rolling back an image in use (forced)');
      const backing = checkNotBacking(this.catalog, disk, path, this.imageRoots, o.force === true);
      if (backing) this.log.warn({ jobId, diskId: disk.id, backing }, 'rolling back the backing file of other disks (forced)');
    } catch (err) {
      release();
      throw err;
    }
    return this.jobs.start(jobId, 'rollback', { diskId: disk.id, snapshotId: snap.id, target: null }, async (ctl) => {
      try {
        return await this.rollbacks.run(disk, snap, ctl, checkDiskPath(disk, this.imageRoots));
      } finally {
        release();
      }
    });
  }

  /**
   * `rollback --abandon`: clears an unfinished rollback's journal without finishing it, so that
   * the disk takes snapshots again and the target can be deleted. The image keeps whatever the
   * rollback left. Only while no job runs on the disk (a running rollback's journal is its own),
   * and `snapRef`, when given, must be the journaled target.
   */
  abandonRollback(diskRef: string, snapRef?: string): RollbackAbandoned {
    this.assertOpen();
    const disk = this.resolveDisk(diskRef);
    const p = disk.pendingRollback;
    const snap = snapRef === undefined ? undefined : this.resolveSnapshot(snapRef, disk.id, true);
    if (!p) {
      throw new BlocksnapError('RollbackNotPending', `disk ${disk.name} has no unfinished rollback to abandon`, { diskId: disk.id });
    }
    if (snap !== undefined && snap.id !== p.snapshotId) {
      throw new BlocksnapError('RollbackNotPending',
        `disk ${disk.name} has no unfinished rollback to ${snap.id}; its unfinished rollback is to ${p.snapshotId} (job ${p.jobId})`,
        { diskId: disk.id, snapshotId: p.snapshotId });
    }
    const release = this.diskLocks.acquire(disk.id, `abandon:${p.jobId}`);
    try {
      const d = this.catalog.getDisk(disk.id)!;
      const cur = d.pendingRollback;
      if (!cur || cur.jobId !== p.jobId) throw new BlocksnapError('RollbackNotPending', `disk ${disk.name} has no unfinished rollback to abandon`, { diskId: disk.id });
      const target = this.catalog.getSnapshot(cur.snapshotId);
      const image = abandonedImage(d, cur);
      this.catalog.txn(() => this.catalog.putDisk({ ...this.catalog.getDisk(disk.id)!, pendingRollback: null }));
      const abandoned = { snapshotId: cur.snapshotId, startedAt: cur.startedAt, jobId: cur.jobId };
      this.log.warn({ diskId: d.id, ...abandoned, image }, 'unfinished rollback abandoned: the image keeps what it left, and the disk takes snapshots again');
      return { diskId: d.id, abandoned, image, message: abandonedMessage(d, image, target?.name ?? cur.snapshotId) };
    } finally {
      release();
    }
  }

  /** `o.user`: the client's rights, when it is neither root nor the daemon's user; the clone is given to it. */
  startClone(snapRef: string, path: string, o: { format?: ImageFormat; user?: UserAccess } = {}): Job {
    this.assertOpen();
    const snap = this.resolveSnapshot(snapRef);
    requireAvailable(snap);
    const format = o.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      throw new BlocksnapError('InvalidArgument', `format must be "raw" or "qcow2", not ${JSON.stringify(format)}`);
    }
    const target = newFileFor(o.user, path, () => resolveNewFile(path, this.imageRoots));
    // The target's directory stays held (newFileFor) until writePartial has opened it, or the job ends.
    const pin = this.pinSnapshot(snap.id);
    const unpin = (): void => {
      pin();
      o.user?.release();
    };
    try {
      const jobId = newId('j');
      return this.jobs.start(jobId, 'clone', { diskId: snap.diskId, snapshotId: snap.id, target }, async (ctl): Promise<CloneResult> => {
        try {
          const view = readView(this.catalog, snap);
          const r = await writePartial(target, jobId, (partial, at) => cloneImage(partial, format, {
            storeDir: this.store.dir, blockSize: this.blockSize, sizeBytes: snap.sizeBytes, digests: view,
            ...(this.threads ? { threads: this.threads } : {}), onProgress: (d, t, phase) => ctl.progress(d, t, phase), signal: ctl.signal,
          }, at), o.user);
          return { path: target, sizeBytes: r.sizeBytes, format, snapshotId: snap.id, bytesWritten: r.bytesWritten };
        } catch (err) {
          throw withDamageGuidance(err, `snapshot ${this.snapshotNamed(snap)}`, 'clone it again (no file was left at the target)');
        } finally {
          unpin();
        }
      });
    } catch (err) {
      unpin();
      throw err;
    }
  }

  /** An instant copy-on-write disk over the snapshot (clone --cow): no data is copied. */
  async cloneCow(snapRef: string, name: string): Promise<Disk> {
    this.assertOpen();
    const snap = this.resolveSnapshot(snapRef);
    requireAvailable(snap);
    const valid = validateName('disk', name);
    if (this.catalog.allDisks().some((d) => d.name === valid)) throw new BlocksnapError('NameTaken', `a disk named ${JSON.stringify(valid)} exists already`);
    return this.publicDisk(await this.cow.clone(snap, valid));
  }

  /**
   * Writes a copy-on-write disk, as of the moment the job starts, to a new raw or qcow2 image;
   * `o.user` as for startClone.
   */
  startFlatten(diskRef: string, path: string, o: { format?: ImageFormat; user?: UserAccess } = {}): Job {
    this.assertOpen();
    const disk = this.resolveDisk(diskRef);
    if (!disk.cow) throw new BlocksnapError('NotCowDisk', `disk ${disk.name} is an image file already; clone one of its snapshots instead`);
    const format = o.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') {
      throw new BlocksnapError('InvalidArgument', `format must be "raw" or "qcow2", not ${JSON.stringify(format)}`);
    }
    const target = newFileFor(o.user, path, () => resolveNewFile(path, this.imageRoots));
    const jobId = newId('j');
    const unlock = this.diskLocks.acquire(disk.id, jobId);
    // The target's directory stays held (newFileFor) until writePartial has opened it, or the job ends.
    const release = (): void => {
      unlock();
      o.user?.release();
    };
    return this.jobs.start(jobId, 'flatten', { diskId: disk.id, snapshotId: null, target }, async (ctl): Promise<FlattenResult> => {
      try {
        const r = await writePartial(target, jobId, (partial, at) => this.cow.flatten(disk, partial, format, ctl, at), o.user);
        this.log.info({ jobId, diskId: disk.id, path: target, format, bytesWritten: r.bytesWritten }, 'copy-on-write disk flattened');
        return { ...r, path: target };
      } finally {
        release();
      }
    });
  }

  // ---------------------------------------------------------------- store

  storeStats(): StoreStats {
    const t = this.catalog.totals();
    // What gc or a later sweep removed meanwhile is off the free list, and no longer listed.
    const unremovable = [...this.unremovable].filter(([hex]) => this.catalog.isFree(Buffer.from(hex, 'hex'))).map(([, e]) => e).slice(0, 100);
    return {
      blocks: t.blocks, bytes: t.bytes, pendingFreeBlocks: this.catalog.freeCount(), unremovable, blockSize: this.blockSize, dataDir: this.dataDir,
      catalogHold: this.catalogHold,
    };
  }

  /** A consistent copy of the catalog at `path` (absolute, not existing), while the daemon serves. */
  async backupCatalog(path: string): Promise<CatalogBackup> {
    this.assertOpen();
    return backupCatalog(this.catalog, path);
  }

  /**
   * The operator's word that this catalog is the store's (after CatalogMismatch): deletions resume,
   * and gc removes what the catalog does not reference.
   */
  acceptCatalog(): CatalogAccepted {
    this.assertOpen();
    const was = this.catalogHold;
    if (was === null) {
      const id = this.catalog.identity();
      return { accepted: false, previousHold: null, storeId: id.storeId!, generation: id.generation };
    }
    const stamp = acceptCatalog(this.catalog, this.dataDir);
    this.catalogHold = null;
    this.log.warn({ reason: was.reason, storeId: stamp.storeId, generation: stamp.generation }, 'the catalog was accepted as the block store\'s: deletions resume');
    this.scheduleSweep();
    return { accepted: true, previousHold: was.reason, ...stamp };
  }

  listChains(diskRef?: string): ChainSummary[] {
    const disks = diskRef === undefined ? this.catalog.allDisks() : [this.resolveDisk(diskRef)];
    return disks.map((d) => {
      const snaps = this.catalog.snapshotsOfDisk(d.id).filter((s) => s.status === 'available');
      const distinct = distinctBlocks(this.catalog, snaps);
      return {
        diskId: d.id, diskName: d.name, snapshots: snaps.length,
        logicalBytes: snaps.reduce((a, s) => a + s.logicalBytes, 0),
        storedBytes: distinct.bytes, storedBlocks: distinct.blocks,
      };
    });
  }

  /**
   * Re-reads every referenced block and checks its header and digest. Runs without the store
   * lock, so a block may be freed, swept and even stored again (by a new snapshot) while it runs:
   * the blocks it found wrong are read once more under the shared store lock (nothing is
   * unlinked meanwhile), and only those still referenced and still wrong are reported.
   */
  startVerify(): Job {
    this.assertOpen();
    return this.jobs.start(newId('j'), 'verify', { diskId: null, snapshotId: null, target: null }, (ctl) => verifyStore(this.maintenance, ctl));
  }

  /**
   * Reclaims every block file no snapshot references (what a crash mid-snapshot or mid-import
   * left: a failed or cancelled one frees its own blocks) and temp files. Holds the store lock exclusively: it waits for running snapshots to commit, and
   * snapshots started meanwhile wait for it.
   */
  startGc(): Job {
    this.assertOpen();
    if (this.catalogHold !== null) throw new BlocksnapError('CatalogMismatch', `store gc is refused: ${this.catalogHold.message}`, { reason: this.catalogHold.reason });
    return this.jobs.start(newId('j'), 'gc', { diskId: null, snapshotId: null, target: null }, (ctl) => collectGarbage(this.maintenance, ctl));
  }

  /**
   * Unlinks freed blocks when no snapshot is writing. Otherwise, or while a sweep that has read
   * the free list already runs, the sweep is wanted: the store lock's release starts it.
   */
  private scheduleSweep(): void {
    if (this.catalogHold !== null) return;
    if (this.catalog.freeCount() === 0) return;
    if (this.sweeping) { this.sweepWanted = true; return; }
    const release = this.storeLock.tryExclusive();
    if (!release) { this.sweepWanted = true; return; }
    this.sweepWanted = false;
    this.sweeping = this.sweepLocked()
      .catch((err) => this.log.error({ err }, 'sweeping freed blocks failed; gc will retry'))
      .finally(() => { this.sweeping = null; release(); });
  }

  /**
   * Unlinks what the free list holds and no snapshot references (the store lock, held exclusively,
   * keeps snapshots from storing or committing meanwhile: invariant 2). A file it cannot unlink is
   * logged and stays on the list, and the others go all the same; a shutdown stops it between
   * blocks, and what it unlinked so far leaves the list.
   */
  private async sweepLocked(): Promise<void> {
    const free = this.catalog.freeDigests();
    const gone: Buffer[] = [];
    const unremovable = new Map<string, UnremovableEntry>();
    for (const d of free) {
      if (this.closing) break;
      if (this.catalog.isReferenced(d)) continue;
      const r = await this.store.reclaim(d);
      if (r.unremovable) unremovable.set(d.toString('hex'), r.unremovable); else gone.push(d);
    }
    if (!this.closing) this.unremovable = unremovable;
    if (unremovable.size > 0) {
      this.log.error({ entries: unremovable.size, first: [...unremovable.values()].slice(0, 20) },
        'freed block files could not be unlinked and stay pending; remove them by hand (store stats lists them), then run store gc');
    }
    this.catalog.txn(() => {
      const unlinked = gone.filter((d) => !this.catalog.isReferenced(d));
      for (const d of unlinked) this.catalog.removeFree(d);
      this.repair.forget(unlinked); // an unlinked damaged block is damaged no more
    });
  }

  /** Resolves once any sweep in flight has finished (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.sweeping) await this.sweeping;
    await this.volumes.idle();
  }

  // ---------------------------------------------------------------- jobs

  listJobs(): Job[] { return this.jobs.list(); }
  getJob(id: string): Job { return this.jobs.get(id); }
  cancelJob(id: string): Job { return this.jobs.cancel(id); }
  waitJob(id: string): Promise<Job> { return this.jobs.wait(id); }

  // ---------------------------------------------------------------- resolution and views

  private resolveDisk(ref: string): DiskRecord {
    return resolveIdOrName(ref, { prefix: 'd', noun: 'disk', notFound: 'DiskNotFound' },
      (id) => this.catalog.getDisk(id), () => this.catalog.allDisks());
  }

  /**
   * By id, or by name: within `diskId` when given, else across disks (names are unique per disk
   * only). With `otherDisks`, for a caller that then checks the disk itself (rollback), a name
   * none of `diskId`'s snapshots has but one snapshot of another disk has resolves to that one,
   * as its id would: that check then says whose it is, where "no snapshot" sent the user looking
   * for a typo in a name `snapshot show` finds.
   */
  /** A snapshot's id and its disk's name, which tell apart snapshots of one name. */
  private snapshotOfDisk(s: SnapshotRecord): string {
    return `${s.id} of disk ${this.catalog.getDisk(s.diskId)?.name ?? s.diskId}`;
  }

  /** A snapshot as the operator knows it: its name, id and disk. */
  private snapshotNamed(s: SnapshotRecord): string {
    return `${s.name} (${this.snapshotOfDisk(s)})`;
  }

  private resolveSnapshot(ref: string, diskId?: string, otherDisks = false): SnapshotRecord {
    if (typeof ref !== 'string' || ref.length === 0) throw new BlocksnapError('InvalidArgument', 'a snapshot id or name is required');
    if (looksLikeId('s', ref)) {
      const s = this.catalog.getSnapshot(ref);
      if (s) return s;
    }
    const pool = diskId ? this.catalog.snapshotsOfDisk(diskId) : this.catalog.allSnapshots();
    const byName = pool.filter((s) => s.name === ref);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) {
      throw new BlocksnapError('AmbiguousName', `${byName.length} snapshots are named ${JSON.stringify(ref)} (${someOf(byName.map((s) => this.snapshotOfDisk(s)))}); use the id`);
    }
    if (diskId && otherDisks) {
      const elsewhere = this.catalog.allSnapshots().filter((s) => s.name === ref);
      if (elsewhere.length === 1) return elsewhere[0]!;
      if (elsewhere.length > 1) {
        throw new BlocksnapError('SnapshotNotFound',
          `disk ${this.catalog.getDisk(diskId)?.name ?? diskId} has no snapshot ${JSON.stringify(ref)}; ` +
          `${elsewhere.length} snapshots of other disks have that name (${someOf(elsewhere.map((s) => this.snapshotOfDisk(s)))})`);
      }
    }
    throw new BlocksnapError('SnapshotNotFound', `no snapshot ${JSON.stringify(ref)}`);
  }

  /**
   * Refuses (ImageTooLarge) a snapshot of disk `diskId` whose image has grown past the blocks a
   * snapshot may hold since `disk add` checked it, before a snapshot record is made for it: no
   * failed record is left for a size known in advance. Only the size is judged here; whatever else
   * keeps the image from being read, the snapshot's job finds and records as before.
   */
  checkSnapshotSize(diskId: string): void {
    const disk = this.catalog.getDisk(diskId);
    if (!disk || disk.cow) return;
    let size: bigint;
    const user = registrantAccess(disk);
    try {
      const path = checkDiskPath(disk, this.imageRoots, user);
      size = imageSize(path, imageFormatOf(disk), user?.identity(path));
    } catch {
      return;
    } finally {
      user?.release();
    }
    checkBlockCount(disk.path, size, this.blockSize);
  }

  /** Disk.imageBytes: one fstat, or one header read for qcow2, per disk shown; null when its registrant may no longer read it. */
  private imageBytesNow(d: DiskRecord): number | null {
    if (d.format === 'cow') return d.sizeBytes;
    const user = registrantAccess(d);
    try {
      checkRegistrantImage(d, d.path, user);
      return Number(imageSize(d.path, d.format, user?.identity(d.path)));
    } catch {
      return null;
    } finally {
      user?.release();
    }
  }

  /**
   * The journal's own job holds the disk: its rollback runs, and will end the journal itself. A
   * rerun holds the disk under its own job id only until it rewrites the journal as its own.
   */
  private rollbackRunning(d: DiskRecord): boolean {
    return d.pendingRollback !== null && this.diskLocks.holder(d.id) === d.pendingRollback.jobId;
  }

  /**
   * RollbackIncomplete for a disk whose rollback stopped unfinished. A rollback that runs keeps
   * its journal set too: then the disk is busy, which the disk lock reports (DiskBusy), not left
   * unfinished. `refused`: what is refused, when it is not a snapshot.
   */
  private refuseUnfinishedRollback(d: DiskRecord, refused?: string): void {
    if (d.pendingRollback && this.diskLocks.holder(d.id) === undefined) throw rollbackIncomplete(d, refused);
  }

  private publicDisk(d: DiskRecord): Disk {
    const cow = d.cow ? { ...d.cow, overlayBytes: this.volumes.overlayBytes(d.id, d.cow.layers), writtenBytes: this.volumes.writtenBytes(d) } : null;
    const p = d.pendingRollback;
    const pendingRollback = p ? { snapshotId: p.snapshotId, startedAt: p.startedAt, jobId: p.jobId, running: this.rollbackRunning(d) } : null;
    const formatSource = d.cow ? null : d.formatSource ?? 'detected';
    const { registeredBy, ...shown } = d;
    return {
      ...shown, imageBytes: this.imageBytesNow(d), pendingRollback, cow, formatSource, givenPath: d.givenPath ?? null,
      registeredBy: registeredBy === undefined ? null : { uid: registeredBy.uid }, snapshotCount: this.catalog.snapshotsOfDisk(d.id).length,
    };
  }

  /** `children`: the snapshot's children when the caller has them at hand (listings). */
  private publicSnapshot(s: SnapshotRecord, children?: SnapshotRecord[]): Snapshot {
    const { jobId: _jobId, ...rest } = s;
    const job = s.status === 'creating' && s.jobId ? this.jobs.ifRunning(s.jobId) : undefined;
    return {
      ...rest, tags: s.tags ?? {}, groupId: s.groupId ?? null, consistency: s.consistency ?? null, warnings: s.warnings ?? [], uniqueBytes: uniqueBytes(this.catalog, s, children),
      progress: job ? snapshotProgress(job) : null,
    };
  }
}

function requireAvailable(s: SnapshotRecord): void {
  if (s.status !== 'available') {
    throw new BlocksnapError('SnapshotNotAvailable', `snapshot ${s.id} is ${s.status}${s.error ? ` (${s.error.code}: ${s.error.message})` : ''}`);
  }
}

function alreadyRegistered(path: string, same: DiskRecord): BlocksnapError {
  const through = same.path === path ? '' : ` (${same.path} is the same file)`;
  return new BlocksnapError('DiskAlreadyRegistered', `${path} is already registered as disk ${same.name}${through}`, { path, diskId: same.id });
}

function snapshotInGroup(s: SnapshotRecord): BlocksnapError {
  return new BlocksnapError('SnapshotInGroup', `snapshot ${s.id} belongs to group ${s.groupId}; delete the group instead`, { snapshotId: s.id, groupId: s.groupId });
}

/** `refused`: what the error refuses, when it is not a snapshot (relocating the disk). */
function rollbackIncomplete(d: DiskRecord, refused?: string): BlocksnapError {
  const p = d.pendingRollback!;
  const until = refused === undefined ? '' : `, and ${refused} is refused until a rollback completes or is abandoned`;
  return new BlocksnapError('RollbackIncomplete',
    `a rollback of disk ${d.name} to ${p.snapshotId} (job ${p.jobId}) did not finish${until}; run the rollback again to complete it, ` +
    `or abandon it (blocksnap rollback ${d.name} --abandon) to keep the image as it is now`,
    { diskId: d.id, snapshotId: p.snapshotId });
}
