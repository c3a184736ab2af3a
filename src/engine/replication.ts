/**
 * Replication of snapshot chains to an S3-compatible remote, and the way back (restore, import),
 * plus remote deletion and gc. Layout and manifest: src/remote/layout.ts and manifest.ts; the
 * rules that keep a shared bucket safe: docs/design.md "Remotes".
 *
 * replicate: for each snapshot, oldest first, skip it when its manifest exists; otherwise upload
 *   the blocks of its view the remote lacks, then the manifest, last. A block is known present
 *   when the snapshot's parent has a manifest there (a manifest implies its blocks, and gc cannot
 *   run while our writer lease lives) or when a listing of the remote's blocks (many blocks in
 *   question: block-presence.ts) or a HEAD finds it; so an incremental snapshot costs HEADs and
 *   PUTs for its changed blocks only, and a rerun after a crash skips what the first run uploaded
 *   (content addressing makes every upload idempotent). Blocks leave the store unhashed: each PUT
 *   is signed with the block's digest as its payload hash, and the storage refuses a body that
 *   does not match it (putBlock). An incremental's few changed blocks go up while the writer
 *   lease is being taken and are asked about again once it is held (uploadBlocks); the lease is
 *   deleted after the job's result, in the background (releaseLater: the state this object
 *   holds, awaited by gc and close()).
 * restore: manifest → a new raw file, every block verified against its digest before writing; or
 *   a new qcow2 file, written by the native writer from blocks staged (verified) in the store.
 * import: manifest → the local store (missing blocks only) and catalog (import-commit.ts).
 * gc: mark-and-sweep under a gc lease (leases.ts), never deleting a block younger than the grace.
 *
 * Memory: 2 × `concurrency` blocks at most (each upload slot reads its next block while it sends
 * one), plus one packed map per snapshot.
 */
import { setMaxListeners } from 'node:events';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { readView } from '../catalog/block-map';
import type { SnapshotRecord } from '../catalog/records';
import { hasBlockOfLength, readBlockUnhashed, sha256Async, writeBlock } from '../store/block-io';
import { BLOCK_HEADER_SIZE, DIGEST_SIZE, isZeroDigest } from '../store/format';
import {
  readCredentials, validateBucket, validateEndpoint, validatePrefix, validateRegion, validateRemoteName, type RemoteConfig,
} from '../remote/config';
import { listBlockPresence, LIST_MIN_BLOCKS } from '../remote/block-presence';
import { blockKey, digestOfKey, idsOfManifestKey, join, manifestKey, BLOCKS, MANIFESTS } from '../remote/layout';
import { DEFAULT_LEASE_TIMING, Lease, leaseKey, type LeaseTiming } from '../remote/leases';
import { decodeManifest, encodeManifest, type Manifest } from '../remote/manifest';
import type { ObjectStore } from '../remote/object-store';
import { RemoteRegistry } from '../remote/registry';
import { S3Store } from '../remote/s3-store';
import { distinctDigests } from '../stream/snapshot-fields';
import { looksLikeId, newId } from './ids';
import { checkImportDamage, checkImportable, commitImported, syncFoundBlocks } from './import-commit';
import type { JobControl } from './jobs';
import type { OffsiteInternals } from './offsite-internals';
import type {
  DamagedRemoteSnapshot, ImportResult, Remote, RemoteCheck, RemoteGcResult, RemoteSnapshot, RemoteSnapshotEntry, ReplicateResult, RestoreResult,
} from './offsite-types';
import { cloneImage } from './image-writes';
import { runPipelined, runPool } from './pool';
import { resolveNewFile } from './paths';
import { writePartial, type PartialAt } from './partial-files';
import type { Job } from './types';

export const DEFAULT_CONCURRENCY = 4;
export const MAX_CONCURRENCY = 64;
/** Block reads from the store at once during an upload (loadBlock). */
const READS_AT_ONCE = 2;
/** Unreferenced remote blocks younger than this survive a gc (clock skew, writers that predate leases). */
export const DEFAULT_GC_GRACE_SECONDS = 3600;

export interface RemoteAddOptions {
  name: string;
  endpoint: string;
  bucket: string;
  prefix?: string;
  region?: string;
  credentialsFile: string;
}

export interface ReplicationOptions {
  /** Lease timing (tests shorten it). */
  leaseTiming?: LeaseTiming;
  /** Opens the object store of a remote; S3 by default. */
  openStore?: (remote: RemoteConfig, onRetry: () => void) => ObjectStore;
}

interface Located { key: string; manifest: Manifest }

/**
 * A manifest object of this remote as read. `manifest` when it decodes; `damage` when it does not,
 * or when it holds another snapshot than its key names (then `manifest` is still what it holds:
 * gc counts its blocks as referenced). `diskId` and `snapshotId` are what the key names.
 */
interface ManifestRead { key: string; diskId: string; snapshotId: string; manifest: Manifest | null; damage: BlocksnapError | null }

/** A block read from the store for upload: `data` is a view of `buf` (header included). */
interface LoadedBlock { buf: Buffer; data: Buffer }

/** What one replicate job shares between its snapshots and upload rounds. */
interface UploadRun {
  store: ObjectStore;
  remote: RemoteConfig;
  concurrency: number;
  ctl: JobControl;
  res: ReplicateResult;
  /** Digests known to be on the remote: named by a manifest there, or uploaded/found by this job. */
  present: Set<string>;
  /** Counts blocks' bytes as done (once per digest), in one progress report. */
  credit: (blocks: Iterable<readonly [string, number]>) => void;
  /** The store's block size: every snapshot's. */
  blockSize: number;
  /** Block buffers whose upload has finished, for the next reads. */
  buffers: Buffer[];
  /** Reads started while the lease was being taken, by digest. */
  prefetched: Map<string, Promise<LoadedBlock>>;
  /** Block reads in progress, and those waiting for their turn (loadBlock). */
  reads: { active: number; waiting: Array<() => void> };
}

interface SnapshotPlan {
  digests: Map<string, number>;
  askParent: boolean;
  /** The parent's distinct digests, read locally; null when unknown here. */
  parent: Set<string> | null;
  unsure: Array<[string, number]>;
  unsureSet: Set<string>;
}

/** How long a start-up deletion of an interrupted job's lease may take (close() waits for it). */
const INTERRUPTED_LEASE_TIMEOUT_MS = 30_000;

export class Replication {
  readonly remotes: RemoteRegistry;
  private readonly leaseTiming: LeaseTiming;
  private readonly openStoreFn: (remote: RemoteConfig, onRetry: () => void) => ObjectStore;
  /** Deletions of the writer leases of ended replications (releaseLater). */
  private readonly releasing = new Set<Promise<void>>();

  constructor(private readonly x: OffsiteInternals, o: ReplicationOptions = {}) {
    this.remotes = new RemoteRegistry(x.catalog);
    this.leaseTiming = o.leaseTiming ?? DEFAULT_LEASE_TIMING;
    this.openStoreFn = o.openStore ?? ((remote, onRetry) => new S3Store(remote, readCredentials(remote.credentialsFile), { onRetry }));
  }

  private open(remote: RemoteConfig, onRetry: () => void = () => undefined): ObjectStore {
    return this.openStoreFn(remote, onRetry);
  }

  // ------------------------------------------------------------ remotes

  addRemote(o: RemoteAddOptions): Remote {
    this.x.assertOpen();
    const r: RemoteConfig = {
      name: validateRemoteName(o.name), endpoint: validateEndpoint(o.endpoint), bucket: validateBucket(o.bucket),
      prefix: validatePrefix(o.prefix), region: validateRegion(o.region), credentialsFile: o.credentialsFile,
      createdAt: new Date().toISOString(),
    };
    readCredentials(r.credentialsFile); // mode and syntax now, rather than at the first replication
    this.remotes.add(r);
    this.x.log.info({ remote: r.name, endpoint: r.endpoint, bucket: r.bucket, prefix: r.prefix }, 'remote added');
    return r;
  }

  listRemotes(): Remote[] { return this.remotes.list(); }
  getRemote(name: string): Remote { return this.remotes.get(name); }

  removeRemote(name: string): Remote {
    this.x.assertOpen();
    const r = this.remotes.remove(name);
    this.x.log.info({ remote: r.name }, 'remote removed (its bucket is untouched)');
    return r;
  }

  async checkRemote(name: string): Promise<RemoteCheck> {
    const r = this.remotes.get(name);
    const store = this.open(r);
    try {
      const probe = join(r.prefix, `check.${this.remotes.hostId}.${Date.now()}`);
      const { latencyMs } = await store.check(probe);
      return { name: r.name, endpoint: r.endpoint, bucket: r.bucket, prefix: r.prefix, latencyMs: Math.round(latencyMs * 10) / 10 };
    } finally {
      store.close();
    }
  }

  /**
   * The snapshots on a remote, oldest first, then those whose manifest is damaged (by key): a
   * damaged manifest is listed, not hidden (gc refuses to run while it is there) and does not
   * fail the listing. Its disk is known only by the id in its key, so asked by a disk's name, the
   * damaged manifests under the ids that name has in readable manifests are listed too.
   */
  async remoteSnapshots(name: string, diskRef?: string): Promise<RemoteSnapshotEntry[]> {
    const r = this.remotes.get(name);
    const store = this.open(r);
    try {
      const all = await this.readManifests(r, store);
      const good: RemoteSnapshot[] = [];
      const damaged: DamagedRemoteSnapshot[] = [];
      for (const m of all) {
        if (m.damage === null) good.push(describe(m.key, m.manifest!));
        else damaged.push(describeDamaged(m));
      }
      const ofDisk = (s: RemoteSnapshot): boolean => diskRef === undefined || s.diskId === diskRef || s.diskName === diskRef;
      const diskIds = new Set([diskRef, ...good.filter(ofDisk).map((s) => s.diskId)]);
      return [
        ...good.filter(ofDisk).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id)),
        ...damaged.filter((s) => diskRef === undefined || diskIds.has(s.diskId)).sort((a, b) => a.key.localeCompare(b.key)),
      ];
    } finally {
      store.close();
    }
  }

  /**
   * Deletes a snapshot's manifest; its blocks become garbage for remote gc unless other manifests
   * name them. A manifest that cannot be used (damaged, or holding another snapshot than its key
   * names) is deleted only with `force`: it can be found by id only (its name is unknown), and
   * deleting it loses nothing another snapshot needs, since every manifest names all of its
   * blocks and only gc deletes blocks; but a manifest this version cannot read may be one a newer
   * version wrote, so the operator says so.
   */
  async deleteRemoteSnapshot(name: string, snapRef: string, o: { force?: boolean } = {}): Promise<RemoteSnapshotEntry> {
    this.x.assertOpen();
    const r = this.remotes.get(name);
    const store = this.open(r);
    try {
      const found = await this.locate(r, store, snapRef);
      if (found.damage !== null && o.force !== true) {
        throw new BlocksnapError('RemoteCorrupt', `${found.damage.message}; \`blocksnap remote delete ${r.name} ${found.snapshotId} --force\` deletes it`, { key: found.key });
      }
      await store.deleteMany([found.key]);
      if (found.damage !== null) {
        this.x.log.warn({ remote: r.name, snapshotId: found.snapshotId, key: found.key, damage: found.damage.message }, 'damaged remote manifest deleted; remote gc frees the blocks only it named');
        return describeDamaged(found);
      }
      this.x.log.info({ remote: r.name, snapshotId: found.snapshotId }, 'remote snapshot deleted; remote gc frees its blocks');
      return describe(found.key, found.manifest!);
    } finally {
      store.close();
    }
  }

  // ------------------------------------------------------------ replicate

  /**
   * SNAP replicates one snapshot; DISK every available snapshot of the disk, oldest first (only
   * those `only` accepts: a policy replicates the automatic ones).
   */
  startReplicate(ref: string, remoteName: string, o: { concurrency?: number; only?: (s: SnapshotRecord) => boolean } = {}): Job {
    this.x.assertOpen();
    const remote = this.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    const { snaps, diskId } = this.resolveSource(ref, o.only ?? (() => true));
    const unpins = snaps.map((s) => this.x.pin(s.id));
    const unpinAll = (): void => unpins.forEach((u) => u());
    try {
      return this.x.jobs.start(newId('j'), 'replicate', { diskId, snapshotId: snaps.length === 1 ? snaps[0]!.id : null, target: remote.name }, async (ctl) => {
        try {
          return await this.runReplicate(remote, snaps, concurrency, ctl);
        } finally {
          unpinAll();
        }
      });
    } catch (err) {
      unpinAll();
      throw err;
    }
  }

  private resolveSource(ref: string, only: (s: SnapshotRecord) => boolean): { snaps: SnapshotRecord[]; diskId: string } {
    let disk;
    if (!looksLikeId('s', ref)) {
      try {
        disk = this.x.resolveDisk(ref);
      } catch (err) {
        if (toBlocksnapError(err).code !== 'DiskNotFound') throw err;
      }
    }
    if (disk) {
      const snaps = this.x.catalog.snapshotsOfDisk(disk.id).filter((s) => s.status === 'available' && only(s));
      if (snaps.length === 0) throw new BlocksnapError('SnapshotNotFound', `disk ${disk.name} has no available snapshot to replicate`);
      return { snaps, diskId: disk.id };
    }
    const snap = this.x.resolveSnapshot(ref);
    if (snap.status !== 'available') throw new BlocksnapError('SnapshotNotAvailable', `snapshot ${snap.id} is ${snap.status}`);
    return { snaps: [snap], diskId: snap.diskId };
  }

  private async runReplicate(remote: RemoteConfig, snaps: SnapshotRecord[], concurrency: number, ctl: JobControl): Promise<ReplicateResult> {
    const res: ReplicateResult = {
      remote: remote.name, replicated: [], alreadyPresent: [], uploadedBlocks: 0, uploadedBytes: 0, skippedBlocks: 0, manifestBytes: 0, retries: 0,
    };
    const store = this.open(remote, () => { res.retries++; });
    // Every request in flight listens on the job's signal: up to 2 × concurrency HEADs, reads and
    // uploads, or LIST_MIN_BLOCKS HEADs at once (Node warns past 10 listeners).
    setMaxListeners(2 * concurrency + LIST_MIN_BLOCKS, ctl.signal);
    const run: UploadRun = {
      store, remote, concurrency, ctl, res, present: new Set(), credit: () => undefined, blockSize: this.x.catalog.blockSize, buffers: [], prefetched: new Map(),
      reads: { active: 0, waiting: [] },
    };
    // Taking the lease stops with the job: a lease that is only half taken when the job fails
    // is deleted in the background like any other (releaseLater).
    const leaseAbort = new AbortController();
    let leasing: Promise<Lease> | null = null;
    /** The uploads of a small incremental started before the lease is held (uploadBlocks). */
    let early: Promise<void> | null = null;
    try {
      // Progress counts the distinct block bytes of every view to replicate.
      const views = new Map<string, Buffer>();
      let total = 0;
      const counted = new Set<string>();
      for (const s of snaps) {
        const v = readView(this.x.catalog, s);
        views.set(s.id, v);
        for (const [hex, len] of distinctDigests(v, s.sizeBytes, s.blockSize)) if (!counted.has(hex)) { counted.add(hex); total += len; }
      }
      let done = 0;
      ctl.progress(0, total);
      const credited = new Set<string>();
      // A progress report reaches every client connection: one per round, not one per block.
      run.credit = (blocks) => {
        const before = done;
        for (const [hex, len] of blocks) {
          if (credited.has(hex)) continue;
          credited.add(hex);
          done += len;
        }
        if (done !== before) ctl.progress(done, total);
      };
      // One snapshot (the usual manual run): the lease costs two round trips, PUT then LIST, and
      // the first blocks likely to go up are read meanwhile (reading is local; started first, as
      // the store's blocks are usually not cached). An incremental's few changed blocks even go
      // up meanwhile, each asked about again once the lease is held (docs/design.md "Remote gc",
      // rule 2); otherwise the remote is asked only under the lease.
      const plans = new Map<string, SnapshotPlan>();
      const single = snaps.length === 1 ? this.plan(snaps[0]!, views.get(snaps[0]!.id)!, res, run.present) : null;
      if (single) {
        plans.set(snaps[0]!.id, single);
        for (const [hex] of single.unsure.slice(0, 2 * concurrency)) {
          const p = loadBlock(run, this.x.store.dir, hex);
          p.catch(() => undefined); // used, or dropped, by uploadBlocks
          run.prefetched.set(hex, p);
        }
      }
      const taking = Lease.writer(store, remote.prefix, this.remotes.hostId, ctl.job.id, {
        timing: this.leaseTiming, isStale: (id) => this.isStaleJob(id), signal: AbortSignal.any([ctl.signal, leaseAbort.signal]),
      });
      leasing = taking;
      taking.catch(() => undefined); // awaited below
      if (single?.askParent && single.unsure.length < LIST_MIN_BLOCKS) {
        early = this.uploadBlocks(run, single.unsure, taking);
        early.catch(() => undefined); // awaited below with the manifest questions
      }
      // A failed early upload (a damaged block) ends the job without waiting for the lease.
      const lease = await (early ? Promise.race([taking, early.then(() => taking)]) : taking);
      // Several snapshots (a disk, a policy run): most of the older ones are usually there
      // already, so all but the newest are asked about first, at once, one HEAD each.
      const there = new Map<string, boolean>();
      await runPool(snaps.slice(0, -1), LIST_MIN_BLOCKS, async (s) => {
        there.set(s.id, (await store.head(manifestKey(remote.prefix, s.diskId, s.id), ctl.signal)) !== null);
      }, ctl.signal);
      for (const s of snaps) {
        const key = manifestKey(remote.prefix, s.diskId, s.id);
        const view = views.get(s.id)!;
        const plan = plans.get(s.id) ?? this.plan(s, view, res, run.present);
        // One round: is the snapshot there already (unless asked above), is its parent (whose
        // manifest implies its blocks), and, without waiting for those answers, the blocks the
        // parent lacks go up (whatever the answers, those are needed; a HEAD skips any already there).
        const [mine, parentDigests] = there.get(s.id) === true ? [true, null] : await settleAll([
          there.has(s.id) ? Promise.resolve(false) : store.head(key, ctl.signal).then((o) => o !== null),
          plan.askParent ? this.parentOnRemote(store, remote, s, plan.parent, ctl.signal) : Promise.resolve(null),
          early ?? this.uploadBlocks(run, plan.unsure),
        ] as const);
        if (mine) {
          res.alreadyPresent.push(s.id);
          for (const hex of plan.digests.keys()) run.present.add(hex);
          run.credit(plan.digests);
          continue;
        }
        for (const hex of parentDigests ?? []) run.present.add(hex);
        // What is still in doubt: blocks shared with a parent whose manifest is not there.
        const rest: Array<[string, number]> = [];
        const known: Array<[string, number]> = [];
        for (const [hex, len] of plan.digests) {
          if (plan.unsureSet.has(hex)) continue; // counted by uploadBlocks
          (run.present.has(hex) ? known : rest).push([hex, len]);
        }
        res.skippedBlocks += known.length;
        run.credit(known);
        await this.uploadBlocks(run, rest);
        // The manifest is the commit point: only now, and only while our lease is certainly live.
        const disk = this.x.catalog.getDisk(s.diskId);
        const body = encodeManifest({
          snapshot: {
            id: s.id, diskId: s.diskId, diskName: disk?.name ?? s.diskId, name: s.name, description: s.description, type: s.type,
            parentId: s.parentId, createdAt: s.createdAt, completedAt: s.completedAt, sizeBytes: s.sizeBytes, blockSize: s.blockSize,
            blockCount: s.blockCount, logicalBytes: s.logicalBytes,
          },
          host: this.remotes.hostId, replicatedAt: new Date().toISOString(), map: view,
        });
        await lease.whileHeld(ctl.signal, (signal) => store.put(key, body, signal));
        res.manifestBytes += body.length;
        res.replicated.push(s.id);
        this.x.log.info({ remote: remote.name, snapshotId: s.id, uploadedBlocks: res.uploadedBlocks, uploadedBytes: res.uploadedBytes }, 'snapshot replicated');
      }
      ctl.progress(total, total);
      return res;
    } finally {
      leaseAbort.abort();
      await early?.catch(() => undefined); // nothing of the job keeps running after its end
      this.releaseLater(leasing, store);
    }
  }

  /**
   * Deletes a replication's writer lease after its job has ended, without holding up the job's
   * result: once the manifest is written the lease protects nothing, and a lease that is never
   * deleted expires on its own (docs/design.md "Remote gc"). A gc of this daemon and close() wait
   * for these deletions (settleReleases), so that neither finds a lease about to disappear.
   */
  private releaseLater(leasing: Promise<Lease> | null, store: ObjectStore): void {
    if (leasing === null) {
      store.close();
      return;
    }
    const p: Promise<void> = leasing.then((l) => l.release(), () => undefined).finally(() => {
      store.close();
      this.releasing.delete(p);
    });
    this.releasing.add(p);
  }

  /**
   * After a crash: deletes, in the background, the leases the interrupted replications and
   * remote gcs of this data dir left. Other hosts cannot tell them from live ones and would wait
   * them out (TTL + skew; a dead gc's lease holds every other host's replications off that long).
   * They are certainly stale: this daemon holds the data dir's lock, so the one that started
   * those jobs is gone (rule 6 of "Remote gc" in docs/design.md). Best effort: a remote that
   * cannot be reached, or was removed, keeps them until they expire, as before.
   */
  releaseInterrupted(jobs: Job[]): void {
    for (const job of jobs) {
      const kind = job.kind === 'replicate' ? 'writer' : job.kind === 'remote-gc' ? 'gc' : null;
      if (kind === null || job.target === null) continue;
      let remote: RemoteConfig;
      try {
        remote = this.remotes.get(job.target);
      } catch {
        continue;
      }
      let store: ObjectStore;
      try {
        store = this.open(remote);
      } catch (err) {
        this.x.log.warn({ err, remote: remote.name, jobId: job.id }, 'cannot reach the remote to delete the lease of an interrupted job; it expires on its own');
        continue;
      }
      const key = leaseKey(remote.prefix, kind, this.remotes.hostId, job.id);
      const p: Promise<void> = store.deleteMany([key], AbortSignal.timeout(INTERRUPTED_LEASE_TIMEOUT_MS)).then(
        () => this.x.log.info({ remote: remote.name, jobId: job.id, key }, 'deleted the lease of an interrupted job'),
        (err: unknown) => this.x.log.warn({ err, remote: remote.name, jobId: job.id, key }, 'could not delete the lease of an interrupted job; it expires on its own'),
      ).finally(() => {
        store.close();
        this.releasing.delete(p);
      });
      this.releasing.add(p);
    }
  }

  /** Resolves once the writer leases of every ended replication are deleted (or given up on: they expire). */
  async settleReleases(): Promise<void> {
    while (this.releasing.size > 0) await Promise.all([...this.releasing]);
  }

  /**
   * What replicating `s` starts from: its distinct digests, and those in doubt before the remote
   * is asked anything: not known present, and not in the parent's view (while the parent is still
   * here and this job has not handled it, its manifest on the remote would vouch for the rest).
   */
  private plan(s: SnapshotRecord, view: Buffer, res: ReplicateResult, present: Set<string>): SnapshotPlan {
    const digests = distinctDigests(view, s.sizeBytes, s.blockSize);
    const askParent = s.parentId !== null && !res.replicated.includes(s.parentId) && !res.alreadyPresent.includes(s.parentId);
    const parent = askParent ? this.localParentDigests(s) : null;
    const unsure = [...digests].filter(([hex]) => !present.has(hex) && !(parent?.has(hex) ?? false));
    return { digests, askParent, parent, unsure, unsureSet: new Set(unsure.map(([hex]) => hex)) };
  }

  /**
   * Uploads those of `blocks` the remote lacks. Many in question: one listing settles most of them
   * first (block-presence.ts); otherwise, and for what the listing did not reach, a HEAD per block.
   * Each slot finds out about and reads its next block while its current one uploads, so the
   * PUTs run back to back.
   *
   * `leasing`: the writer lease is still being taken. What a HEAD says now may be undone by a gc
   * that was sweeping before our lease existed, even for a block just uploaded (a gc that listed
   * it earlier, old, may delete it after our PUT); so once the lease is held each block is asked
   * about again and sent again if it is gone. From then on no gc sweeps until the lease is gone.
   */
  private async uploadBlocks(run: UploadRun, blocks: Array<[string, number]>, leasing?: Promise<Lease>): Promise<void> {
    const { store, remote, ctl, res } = run;
    if (blocks.length === 0) return;
    let held = leasing === undefined;
    leasing?.then(() => { held = true; }, () => undefined);
    const listed = blocks.length >= LIST_MIN_BLOCKS ? await listBlockPresence(store, remote.prefix, blocks.map(([hex]) => hex), ctl.signal) : null;
    await runPipelined(blocks, run.concurrency, async ([hex]): Promise<{ block: LoadedBlock | null; underLease: boolean }> => {
      const underLease = held;
      const early = run.prefetched.get(hex);
      run.prefetched.delete(hex);
      const there = listed?.present.has(hex) === true
        || (!(listed?.absent.has(hex) ?? false) && (await store.head(blockKey(remote.prefix, hex), ctl.signal)) !== null);
      if (!there) return { block: await (early ?? loadBlock(run, this.x.store.dir, hex)), underLease };
      const unused = early ? await early.catch(() => null) : null;
      if (unused) run.buffers.push(unused.buf);
      return { block: null, underLease };
    }, async ([hex, len], { block, underLease }) => {
      let sent = false;
      if (block !== null) {
        await this.sendBlock(run, hex, block);
        sent = true;
      }
      if (!underLease) {
        await leasing;
        if ((await store.head(blockKey(remote.prefix, hex), ctl.signal)) === null) {
          await this.sendBlock(run, hex, await loadBlock(run, this.x.store.dir, hex));
          sent = true;
        }
      }
      if (!sent) res.skippedBlocks++;
      run.present.add(hex);
      run.credit([[hex, len]]);
    }, ctl.signal);
  }

  /** PUTs one block read for upload and gives its buffer back to the run (the PUT has returned, so its body was sent). */
  private async sendBlock(run: UploadRun, hex: string, block: LoadedBlock): Promise<void> {
    await this.putBlock(run.store, run.remote, hex, block.data, run.ctl.signal);
    run.res.uploadedBlocks++;
    run.res.uploadedBytes += block.data.length;
    run.buffers.push(block.buf);
  }

  /** The distinct digests of `s`'s parent's view, or null when the parent is gone or unusable here. */
  private localParentDigests(s: SnapshotRecord): Set<string> | null {
    const parent = this.x.catalog.getSnapshot(s.parentId!);
    if (parent?.status !== 'available') return null;
    return new Set(distinctDigests(readView(this.x.catalog, parent), parent.sizeBytes, parent.blockSize).keys());
  }

  /**
   * The digests of `s`'s parent when the remote holds the parent's manifest (which implies its
   * blocks), else null. A manifest's map is its snapshot's view, so with the parent's view read
   * locally (`local`) a HEAD asks only whether the manifest exists; otherwise the manifest is
   * fetched. A damaged one teaches nothing.
   */
  private async parentOnRemote(store: ObjectStore, remote: RemoteConfig, s: SnapshotRecord, local: Set<string> | null, signal: AbortSignal): Promise<Iterable<string> | null> {
    const key = manifestKey(remote.prefix, s.diskId, s.parentId!);
    if (local !== null) return (await store.head(key, signal)) ? local : null;
    const raw = await store.get(key, signal);
    if (!raw) return null;
    try {
      const m = decodeManifest(raw, key);
      return distinctDigests(m.map, m.snapshot.sizeBytes, m.snapshot.blockSize).keys();
    } catch (err) {
      this.x.log.warn({ key, err: toBlocksnapError(err).message }, 'ignoring a damaged parent manifest; checking blocks one by one');
      return null;
    }
  }

  /**
   * PUTs one block signed with its digest as the payload hash: the storage hashes the body and
   * refuses it if it differs, which is where a block read from the store without hashing
   * (readBlockUnhashed) is verified. A refusal means the local block file is damaged.
   */
  private async putBlock(store: ObjectStore, remote: RemoteConfig, hex: string, data: Buffer, signal: AbortSignal): Promise<void> {
    try {
      await store.put(blockKey(remote.prefix, hex), data, signal, { sha256: hex });
    } catch (err) {
      if (toBlocksnapError(err).code !== 'DigestMismatch') throw err;
      // The local file is damaged: listed for repair like any damage a reader finds (block-repair.ts).
      this.x.repair.reportFound(hex, 'digest-mismatch');
      throw new BlocksnapError('DigestMismatch', `block ${hex} does not match its digest: the store is corrupt (remote ${remote.name} refused its upload); nothing references it there`, { digest: hex, remote: remote.name });
    }
  }

  /**
   * Whether a lease of this host id belongs to no live process (docs/design.md "Remote gc", rule
   * 6): its job is recorded in this data dir's catalog, so a daemon holding this data dir's lock
   * started it, and it is not running in this daemon, which holds that lock now. The job record
   * is what ties the lease to this data dir rather than to its host id alone: a copy of the data
   * dir has the same host id, and the jobs its daemon starts are not in this catalog.
   */
  private isStaleJob(jobId: string): boolean {
    return this.x.jobs.ifRunning(jobId) === undefined && this.x.catalog.getJob(jobId) !== undefined;
  }

  // ------------------------------------------------------------ restore and import

  startRestore(remoteName: string, snapRef: string, path: string, o: { format?: string; concurrency?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    const format = o.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw new BlocksnapError('InvalidArgument', `format must be "raw" or "qcow2", not ${JSON.stringify(format)}`);
    const target = resolveNewFile(path, this.x.imageRoots);
    const jobId = newId('j');
    return this.x.jobs.start(jobId, 'restore', { diskId: null, snapshotId: null, target }, async (ctl) => {
      const store = this.open(remote);
      try {
        const { manifest } = usable(await this.locate(remote, store, snapRef, ctl.signal));
        // Written under a partial name, given `target` once complete (partial-files.ts).
        const r = await writePartial(target, jobId, (partial, at) => (format === 'raw'
          ? this.runRestore(remote, store, manifest, partial, at, concurrency, ctl)
          : this.runRestoreQcow2(remote, store, manifest, partial, at, concurrency, ctl)));
        return { ...r, path: target };
      } finally {
        store.close();
      }
    });
  }

  /**
   * qcow2: the native writer lays the image out in one sequential pass from verified store
   * blocks, so the blocks the local store lacks are first downloaded (verified) into it, under the
   * shared store lock so that no sweep removes them meanwhile; afterwards those still unreferenced
   * go to the sweeper. Costs their size in the store until the end; downloads nothing the store has.
   */
  private async runRestoreQcow2(remote: RemoteConfig, store: ObjectStore, m: Manifest, target: string, at: PartialAt, concurrency: number, ctl: JobControl): Promise<RestoreResult> {
    const s = m.snapshot;
    const digests = distinctDigests(m.map, s.sizeBytes, s.blockSize);
    const fetchTotal = [...digests.values()].reduce((a, b) => a + b, 0);
    const total = fetchTotal + s.sizeBytes;
    const res: RestoreResult = { remote: remote.name, snapshotId: s.id, path: target, sizeBytes: s.sizeBytes, format: 'qcow2', downloadedBlocks: 0, downloadedBytes: 0 };
    const staged: Buffer[] = [];
    const releaseStore = await this.x.storeLock.acquireShared();
    try {
      let done = 0;
      ctl.progress(0, total);
      const repaired: string[] = [];
      await runPool(digests.entries(), concurrency, async ([hex, len]) => {
        // A block listed as damaged here is downloaded too, and written over the damaged file (block-repair.ts).
        const repair = this.x.repair.damaged.has(Buffer.from(hex, 'hex'));
        if (!(await hasBlockOfLength(this.x.store.dir, hex, len, wrongLength(hex, len))) || repair) {
          const data = await fetchBlock(store, remote.prefix, hex, len, ctl.signal);
          res.downloadedBlocks++;
          res.downloadedBytes += data.length;
          if (await writeBlock(this.x.store.dir, hex, data, { repair })) {
            if (repair) repaired.push(hex);
            else staged.push(Buffer.from(hex, 'hex'));
          }
        }
        done += len;
        ctl.progress(done, total);
      }, ctl.signal);
      this.x.repair.forgetRepaired(repaired);
      const w = await cloneImage(target, 'qcow2', {
        storeDir: this.x.store.dir, blockSize: s.blockSize, sizeBytes: s.sizeBytes, digests: m.map, signal: ctl.signal,
        onProgress: (d) => ctl.progress(fetchTotal + Math.min(d, s.sizeBytes), total),
      }, at.dirFd);
      res.sizeBytes = w.sizeBytes;
      this.x.log.info({ remote: remote.name, snapshotId: s.id, path: target, format: 'qcow2', downloadedBytes: res.downloadedBytes }, 'restore finished');
      return res;
    } finally {
      releaseStore();
      this.x.releaseOrphans(staged);
    }
  }

  /** raw: `target` is created in the held directory `at` (never by its path); writePartial removes it on failure. */
  private async runRestore(remote: RemoteConfig, store: ObjectStore, m: Manifest, target: string, at: PartialAt, concurrency: number, ctl: JobControl): Promise<RestoreResult> {
    const s = m.snapshot;
    const where = groupByDigest(m.map);
    const total = s.logicalBytes || [...where.values()].reduce((a, idx) => a + idx.length * s.blockSize, 0);
    const file = at.create();
    const res: RestoreResult = { remote: remote.name, snapshotId: s.id, path: target, sizeBytes: s.sizeBytes, format: 'raw', downloadedBlocks: 0, downloadedBytes: 0 };
    try {
      await file.truncate(s.sizeBytes); // ZERO blocks stay holes
      let done = 0;
      ctl.progress(0, total);
      await runPool(where.entries(), concurrency, async ([hex, indexes]) => {
        const data = await fetchBlock(store, remote.prefix, hex, blockLen(s.sizeBytes, s.blockSize, indexes[0]!), ctl.signal);
        res.downloadedBlocks++;
        res.downloadedBytes += data.length;
        for (const i of indexes) {
          const bytesWritten = await file.write(data, i * s.blockSize);
          if (bytesWritten !== data.length) throw new BlocksnapError('IOError', `short write to ${target}`);
          done += data.length;
        }
        ctl.progress(Math.min(done, total), total);
      }, ctl.signal);
      await file.complete();
      this.x.log.info({ remote: remote.name, snapshotId: s.id, path: target, downloadedBytes: res.downloadedBytes }, 'restore finished');
      return res;
    } finally {
      await file.close();
    }
  }

  startImport(remoteName: string, snapRef: string, diskRef: string, o: { concurrency?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    const disk = this.x.resolveDisk(diskRef);
    const jobId = newId('j');
    const release = this.x.diskLocks.acquire(disk.id, jobId);
    try {
      return this.x.jobs.start(jobId, 'import', { diskId: disk.id, snapshotId: null, target: remote.name }, async (ctl): Promise<ImportResult> => {
        const store = this.open(remote);
        try {
          const { manifest: m } = usable(await this.locate(remote, store, snapRef, ctl.signal));
          checkImportable(this.x, m.snapshot, this.x.catalog.getDisk(disk.id)!);
          // Shared store lock from the first block written to the commit: the sweeper and gc must not
          // unlink a block this import found present and will reference.
          const releaseStore = await this.x.storeLock.acquireShared();
          /** Blocks this import added to the store: handed to the sweeper if it fails. */
          const stored: Buffer[] = [];
          /** Blocks the snapshot will reference that this import found in the store already. */
          const present: string[] = [];
          /** Blocks listed as damaged that this import downloaded and wrote again (block-repair.ts). */
          const repaired: string[] = [];
          let committed = false;
          try {
            const digests = distinctDigests(m.map, m.snapshot.sizeBytes, m.snapshot.blockSize);
            const total = [...digests.values()].reduce((a, b) => a + b, 0);
            const res: ImportResult = { snapshotId: m.snapshot.id, diskId: disk.id, parentId: null, storedBlocks: 0, storedBytes: 0, presentBlocks: 0 };
            let done = 0;
            ctl.progress(0, total);
            await runPool(digests.entries(), concurrency, async ([hex, len]) => {
              // A block listed as damaged here is downloaded all the same, and written over the damaged file.
              const repair = this.x.repair.damaged.has(Buffer.from(hex, 'hex'));
              if (await hasBlockOfLength(this.x.store.dir, hex, len, wrongLength(hex, len)) && !repair) {
                res.presentBlocks++;
                present.push(hex);
              } else {
                const data = await fetchBlock(store, remote.prefix, hex, len, ctl.signal);
                if (await writeBlock(this.x.store.dir, hex, data, { repair })) {
                  if (repair) repaired.push(hex);
                  stored.push(Buffer.from(hex, 'hex'));
                  res.storedBlocks++;
                  res.storedBytes += data.length;
                } else {
                  res.presentBlocks++;
                  present.push(hex);
                }
              }
              done += len;
              ctl.progress(done, total);
            }, ctl.signal);
            await syncFoundBlocks(this.x, present);
            await checkImportDamage(this.x, m.map, repaired, ctl.signal);
            const rec = commitImported(this.x, this.x.catalog.getDisk(disk.id)!, m.snapshot, m.map, jobId, repaired);
            committed = true;
            res.parentId = rec.parentId;
            this.x.log.info({ remote: remote.name, snapshotId: rec.id, diskId: disk.id, storedBytes: res.storedBytes }, 'snapshot imported from remote');
            return res;
          } finally {
            releaseStore();
            if (!committed) this.x.releaseOrphans(stored);
          }
        } finally {
          store.close();
          release();
        }
      });
    } catch (err) {
      release();
      throw err;
    }
  }

  // ------------------------------------------------------------ gc

  startRemoteGc(remoteName: string, o: { graceSeconds?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.remotes.get(remoteName);
    const grace = o.graceSeconds ?? DEFAULT_GC_GRACE_SECONDS;
    if (!Number.isSafeInteger(grace) || grace < 0) throw new BlocksnapError('InvalidArgument', 'grace must be a whole number of seconds ≥ 0');
    return this.x.jobs.start(newId('j'), 'remote-gc', { diskId: null, snapshotId: null, target: remote.name }, (ctl) => this.runRemoteGc(remote, grace, ctl));
  }

  private async runRemoteGc(remote: RemoteConfig, graceSeconds: number, ctl: JobControl): Promise<RemoteGcResult> {
    const store = this.open(remote);
    const started = Date.now();
    let lease: Lease | null = null;
    try {
      // A replication of this daemon that has just ended may still be deleting its lease: gc
      // would find it live and wait a poll period for it.
      await this.settleReleases();
      lease = await Lease.gc(store, remote.prefix, this.remotes.hostId, ctl.job.id, {
        timing: this.leaseTiming, signal: ctl.signal, isStale: (id) => this.isStaleJob(id),
        onWait: (w) => this.x.log.info({ remote: remote.name, writers: w.map((l) => `${l.host}/${l.jobId}`) }, 'remote gc waits for replications to finish'),
      });
      const waitedSeconds = Math.round((Date.now() - started) / 100) / 10;
      // Mark. A manifest that cannot be read makes the whole gc fail: what it references is unknown.
      const manifests = await this.readManifests(remote, store, ctl.signal);
      const unreadable = manifests.filter((m) => m.manifest === null);
      if (unreadable.length > 0) throw gcBlockedBy(remote.name, unreadable);
      const referenced = new Set<string>();
      for (const { manifest: m } of manifests) {
        for (const hex of distinctDigests(m!.map, m!.snapshot.sizeBytes, m!.snapshot.blockSize).keys()) referenced.add(hex);
      }
      // Sweep: only blocks no manifest names and older than the grace period.
      const cutoff = Date.now() - graceSeconds * 1000;
      const res: RemoteGcResult = {
        remote: remote.name, manifests: manifests.length, referencedBlocks: referenced.size, deletedBlocks: 0, deletedBytes: 0, youngBlocks: 0, keptBlocks: 0, waitedSeconds,
      };
      let batch: string[] = [];
      let batchBytes = 0;
      let seen = 0;
      const flush = async (): Promise<void> => {
        if (batch.length === 0) return;
        await lease!.whileHeld(ctl.signal, (signal) => store.deleteMany(batch, signal));
        res.deletedBlocks += batch.length;
        res.deletedBytes += batchBytes;
        batch = [];
        batchBytes = 0;
      };
      for await (const o of store.list(`${join(remote.prefix, BLOCKS)}/`, ctl.signal)) {
        const hex = digestOfKey(o.key);
        // Only a key this remote would write: another remote's prefix may lie under blocks/
        // (prefix P/blocks beside P), and its blocks are not this remote's garbage.
        if (hex === null || o.key !== blockKey(remote.prefix, hex)) continue;
        seen++;
        if (referenced.has(hex)) res.keptBlocks++;
        else if (o.lastModified.getTime() > cutoff) res.youngBlocks++;
        else {
          batch.push(o.key);
          batchBytes += o.size;
          if (batch.length >= 1000) await flush();
        }
        ctl.progress(seen, Math.max(seen, referenced.size));
      }
      await flush();
      this.x.log.info({ ...res }, 'remote gc finished');
      return res;
    } finally {
      await lease?.release();
      store.close();
    }
  }

  // ------------------------------------------------------------ manifests

  /** Every manifest of this remote, each decoded or with its damage: one damaged manifest fails none of the others. */
  private async readManifests(remote: RemoteConfig, store: ObjectStore, signal?: AbortSignal): Promise<ManifestRead[]> {
    const out: ManifestRead[] = [];
    for await (const o of store.list(`${join(remote.prefix, MANIFESTS)}/`, signal)) {
      if (!isManifestKey(remote.prefix, o.key)) continue;
      const raw = await store.get(o.key, signal);
      if (raw) out.push(readManifest(raw, o.key));
    }
    return out;
  }

  /**
   * A remote snapshot by id (one LIST) or by unique name (reads the manifests), damaged or not. A
   * name is not resolved while some manifest cannot be used: that one may carry the name too.
   */
  private async locate(remote: RemoteConfig, store: ObjectStore, ref: string, signal?: AbortSignal): Promise<ManifestRead> {
    if (typeof ref !== 'string' || ref.length === 0) throw new BlocksnapError('InvalidArgument', 'a snapshot id or name is required');
    if (looksLikeId('s', ref)) {
      for await (const o of store.list(`${join(remote.prefix, MANIFESTS)}/`, signal)) {
        if (!isManifestKey(remote.prefix, o.key) || idsOfManifestKey(o.key)?.snapshotId !== ref) continue;
        const raw = await store.get(o.key, signal);
        if (raw) return readManifest(raw, o.key);
      }
    } else {
      const all = await this.readManifests(remote, store, signal);
      const byName = all.filter((m) => m.damage === null && m.manifest!.snapshot.name === ref);
      if (byName.length > 1) {
        throw new BlocksnapError('AmbiguousName', `${byName.length} snapshots on remote ${remote.name} are named ${JSON.stringify(ref)} (${byName.map((m) => m.snapshotId).join(', ')}); use the id`);
      }
      const damaged = all.filter((m) => m.damage !== null);
      if (damaged.length > 0) {
        throw new BlocksnapError('RemoteCorrupt', `remote ${remote.name} has ${damaged.length} manifest(s) that cannot be read (${listIds(damaged)}), which may be named ${JSON.stringify(ref)} too; use the snapshot's id`, { snapshots: damaged.map((m) => m.snapshotId) });
      }
      if (byName.length === 1) return byName[0]!;
    }
    throw new BlocksnapError('SnapshotNotFound', `remote ${remote.name} has no snapshot ${JSON.stringify(ref)}`);
  }
}

/**
 * Decodes a manifest read from `key`, keeping what is wrong with it rather than throwing. A
 * manifest must name the snapshot its key names: the checksum covers the text, not the key, and a
 * manifest copied or renamed to another snapshot's key would restore, or import under the id
 * asked for, a different snapshot's data.
 */
function readManifest(raw: Buffer, key: string): ManifestRead {
  const ids = idsOfManifestKey(key)!;
  let manifest: Manifest;
  try {
    manifest = decodeManifest(raw, key);
  } catch (err) {
    const e = toBlocksnapError(err);
    if (e.code !== 'RemoteCorrupt') throw e;
    return { key, ...ids, manifest: null, damage: e };
  }
  const s = manifest.snapshot;
  const damage = ids.snapshotId !== s.id || ids.diskId !== s.diskId
    ? new BlocksnapError('RemoteCorrupt', `manifest ${key} holds snapshot ${s.id} of disk ${s.diskId}, not the one its key names`, { key })
    : null;
  return { key, ...ids, manifest, damage };
}

/** The manifest of a snapshot to restore or import from: one with any damage is refused. */
function usable(m: ManifestRead): Located {
  if (m.damage !== null) throw m.damage;
  return { key: m.key, manifest: m.manifest! };
}

/** Up to five snapshot ids, and how many more. */
function listIds(ms: ManifestRead[]): string {
  const shown = ms.slice(0, 5).map((m) => m.snapshotId).join(', ');
  return ms.length > 5 ? `${shown} and ${ms.length - 5} more` : shown;
}

/**
 * Why gc cannot mark: manifests whose blocks are unknown. Names each (up to ten) with its damage
 * and the command that removes it; the operator decides, as a manifest this version cannot read
 * may come from a newer one.
 */
function gcBlockedBy(remote: string, unreadable: ManifestRead[]): BlocksnapError {
  const n = unreadable.length;
  const shown = unreadable.slice(0, 10).map((m) => `${m.snapshotId} of disk ${m.diskId} (${m.damage!.message})`);
  const more = n > 10 ? `, and ${n - 10} more (blocksnap remote snapshots ${remote} lists them)` : '';
  const first = unreadable[0]!.snapshotId;
  return new BlocksnapError('RemoteCorrupt',
    `remote gc of ${remote} deleted nothing: ${n === 1 ? 'a manifest cannot be read, so the blocks it names are' : `${n} manifests cannot be read, so the blocks they name are`} unknown: `
    + `${shown.join('; ')}${more}. Delete a damaged one with \`blocksnap remote delete ${remote} ${first} --force\``
    + `${n > 1 ? ' (and likewise the others)' : ''}, then run gc again; its snapshot cannot be restored from it, and the blocks only it named become garbage`,
    { snapshots: unreadable.map((m) => m.snapshotId), keys: unreadable.map((m) => m.key) });
}

/** A manifest of this remote, not of one whose prefix lies under its manifests/. */
function isManifestKey(prefix: string, key: string): boolean {
  const ids = idsOfManifestKey(key);
  return ids !== null && key === manifestKey(prefix, ids.diskId, ids.snapshotId);
}

function describe(key: string, m: Manifest): RemoteSnapshot {
  const s = m.snapshot;
  return {
    id: s.id, diskId: s.diskId, diskName: s.diskName, name: s.name, description: s.description, parentId: s.parentId, createdAt: s.createdAt,
    sizeBytes: s.sizeBytes, blockSize: s.blockSize, logicalBytes: s.logicalBytes, host: m.host, replicatedAt: m.replicatedAt, key, damaged: null,
  };
}

function describeDamaged(m: ManifestRead): DamagedRemoteSnapshot {
  return {
    id: m.snapshotId, diskId: m.diskId, diskName: null, name: null, description: null, parentId: null, createdAt: null, sizeBytes: null,
    blockSize: null, logicalBytes: null, host: null, replicatedAt: null, key: m.key, damaged: { code: m.damage!.code, message: m.damage!.message },
  };
}

function checkConcurrency(c: number | undefined): number {
  if (c === undefined) return DEFAULT_CONCURRENCY;
  if (!Number.isSafeInteger(c) || c < 1 || c > MAX_CONCURRENCY) throw new BlocksnapError('InvalidArgument', `concurrency must be an integer from 1 to ${MAX_CONCURRENCY}`);
  return c;
}

function blockLen(sizeBytes: number, blockSize: number, index: number): number {
  return Math.min(blockSize, sizeBytes - index * blockSize);
}

/** Block indexes per distinct non-ZERO digest: each block is downloaded once however often it repeats. */
function groupByDigest(map: Buffer): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (let i = 0; i * DIGEST_SIZE < map.length; i++) {
    if (isZeroDigest(map, i * DIGEST_SIZE)) continue;
    const hex = map.toString('hex', i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE);
    const list = out.get(hex);
    if (list) list.push(i); else out.set(hex, [i]);
  }
  return out;
}

/** Downloads one block and checks it against its digest and expected length before anyone uses it. */
/** A manifest that puts a block this host has where its length cannot fit: forged, or corrupt past its checksum. */
function wrongLength(hex: string, len: number): (have: number) => Error {
  return (have) => new BlocksnapError('RemoteCorrupt', `the manifest puts block ${hex} at a position of ${len} bytes; the block this host has under that digest has ${have}`, { digest: hex });
}

async function fetchBlock(store: ObjectStore, prefix: string, hex: string, length: number, signal?: AbortSignal): Promise<Buffer> {
  const key = blockKey(prefix, hex);
  const data = await store.get(key, signal);
  if (!data) throw new BlocksnapError('RemoteCorrupt', `block ${key} named by a manifest is missing from the remote`, { key, digest: hex });
  if (data.length !== length || (await sha256Async(data)).toString('hex') !== hex) {
    throw new BlocksnapError('RemoteCorrupt', `block ${key} does not match its digest (${data.length} bytes): nothing was written from it`, { key, digest: hex });
  }
  return data;
}

/**
 * Reads one block for upload into a spare buffer of the run (header checked, not hashed: see
 * putBlock). At most READS_AT_ONCE reads run, the others wait in order: the store's blocks are
 * rarely cached, and many reads at once from one disk make the first block wait for all of them,
 * where a few deliver it sooner and its upload starts that much earlier (a disk reads faster than
 * the uploads go, so later blocks are still read ahead of their turn).
 */
async function loadBlock(run: UploadRun, storeDir: string, hex: string): Promise<LoadedBlock> {
  const { reads } = run;
  if (reads.active < READS_AT_ONCE) reads.active++;
  else await new Promise<void>((resolve) => reads.waiting.push(resolve)); // the ending read hands its turn on
  try {
    const buf = run.buffers.pop() ?? Buffer.allocUnsafeSlow(BLOCK_HEADER_SIZE + run.blockSize);
    return { buf, data: await readBlockUnhashed(storeDir, hex, buf) };
  } finally {
    const next = reads.waiting.shift();
    if (next) next(); else reads.active--;
  }
}

/**
 * Promise.all that lets every promise settle before throwing the first failure, so that nothing
 * started here is still running when the job reports its end.
 */
async function settleAll<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
