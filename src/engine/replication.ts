/**
 * Replication of snapshot chains to an S3-compatible remote, and the remotes themselves (their
 * registry, the snapshots on one and their deletion). Layout and manifest: src/remote/layout.ts
 * and manifest.ts; the rules that keep a shared bucket safe: docs/design.md "Remotes". The way
 * back is remote-restore.ts, remote gc remote-gc.ts; both reach the remotes through this object.
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
 *
 * Memory: 2 × `concurrency` blocks at most (each upload slot reads its next block while it sends
 * one), plus one packed map per snapshot.
 */
import { setMaxListeners } from 'node:events';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { readView } from '../catalog/block-map';
import type { SnapshotRecord } from '../catalog/records';
import { readBlockUnhashed } from '../store/block-io';
import { BLOCK_HEADER_SIZE } from '../store/format';
import {
  readCredentials, validateBucket, validateEndpoint, validatePrefix, validateRegion, validateRemoteName, type RemoteConfig,
} from '../remote/config';
import { listBlockPresence, LIST_MIN_BLOCKS } from '../remote/block-presence';
import { blockKey, join, manifestKey } from '../remote/layout';
import { DEFAULT_LEASE_TIMING, Lease, leaseKey, type LeaseTiming } from '../remote/leases';
import { decodeManifest, encodeManifest } from '../remote/manifest';
import type { ObjectStore } from '../remote/object-store';
import { RemoteRegistry } from '../remote/registry';
import { DEFAULT_S3_TIMEOUTS, S3Store, type S3Timeouts } from '../remote/s3-store';
import { distinctDigests } from '../stream/snapshot-fields';
import { looksLikeId, newId } from './ids';
import { asJobCancel, type JobControl } from './jobs';
import type { OffsiteInternals } from './offsite-internals';
import type {
  DamagedRemoteSnapshot, Remote, RemoteCheck, RemoteSnapshot, RemoteSnapshotEntry, ReplicateResult,
} from './offsite-types';
import { runPipelined, runPool } from './pool';
import { describe, describeDamaged, locate, readManifests } from './remote-manifests';
import type { Job } from './types';

export const DEFAULT_CONCURRENCY = 4;
export const MAX_CONCURRENCY = 64;
/** Block reads from the store at once during an upload (loadBlock). */
const READS_AT_ONCE = 2;

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
  /** How long one S3 attempt may take (tests shorten it against a storage that never answers). */
  s3Timeouts?: S3Timeouts;
}

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
  /** The writer lease once held: every block PUT from then on stops when it lapses (sendBlock). */
  lease: Lease | null;
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
  readonly leaseTiming: LeaseTiming;
  private readonly openStoreFn: (remote: RemoteConfig, onRetry: () => void) => ObjectStore;
  /** Deletions of the writer leases of ended replications (releaseLater). */
  private readonly releasing = new Set<Promise<void>>();

  constructor(private readonly x: OffsiteInternals, o: ReplicationOptions = {}) {
    this.remotes = new RemoteRegistry(x.catalog);
    this.leaseTiming = o.leaseTiming ?? DEFAULT_LEASE_TIMING;
    const timeouts = o.s3Timeouts ?? DEFAULT_S3_TIMEOUTS;
    this.openStoreFn = o.openStore ?? ((remote, onRetry) => new S3Store(remote, readCredentials(remote.credentialsFile), { onRetry, timeouts, log: x.log }));
  }

  open(remote: RemoteConfig, onRetry: () => void = () => undefined): ObjectStore {
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

  /**
   * Refused while a policy replicates to it: each later run of the policy would fail to
   * replicate, and a remote added again under the name (another bucket, perhaps) would be used
   * without a word.
   */
  removeRemote(name: string): Remote {
    this.x.assertOpen();
    const using = this.x.policiesReplicatingTo(this.remotes.get(name).name);
    if (using.length > 0) {
      throw new BlocksnapError('RemoteInUse',
        `remote ${name} is where ${using.length === 1 ? `policy ${using[0]}` : `policies ${using.join(', ')}`} ${using.length === 1 ? 'replicates' : 'replicate'}; ` +
        `change that first (blocksnap policy update ${using[0]} --no-replicate-to, or --replicate-to another remote)`, { remote: name, policies: using });
    }
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
      const all = await readManifests(r, store);
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
      const found = await locate(r, store, snapRef);
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
        } catch (err) {
          throw asJobCancel(err, ctl.signal);
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
    let snap: SnapshotRecord;
    try {
      snap = this.x.resolveSnapshot(ref);
    } catch (err) {
      // The source may be either: a disk name typed on a host where that disk is not registered
      // (a rebuilt one) would otherwise read as a missing snapshot.
      const e = toBlocksnapError(err);
      if (e.code !== 'SnapshotNotFound' || looksLikeId('s', ref)) throw err;
      throw new BlocksnapError('SnapshotNotFound', `no snapshot or disk ${JSON.stringify(ref)}`);
    }
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
      reads: { active: 0, waiting: [] }, lease: null,
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
      taking.then((l) => { run.lease = l; }, () => undefined); // awaited below
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
          plan.askParent ? this.parentOnRemote(store, remote, s, plan.parent, ctl) : Promise.resolve(null),
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
            blockCount: s.blockCount, logicalBytes: s.logicalBytes, consistency: s.consistency ?? null,
          },
          host: this.remotes.hostId, replicatedAt: new Date().toISOString(), map: view,
        });
        await lease.whileHeld(ctl.signal, (signal) => store.put(key, body, signal));
        res.manifestBytes += body.length;
        res.replicated.push(s.id);
        this.x.log.info({ jobId: ctl.job.id, remote: remote.name, snapshotId: s.id, uploadedBlocks: res.uploadedBlocks, uploadedBytes: res.uploadedBytes }, 'snapshot replicated');
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
      // A remote verify that repairs holds a writer lease too.
      const kind = job.kind === 'replicate' || job.kind === 'remote-verify' ? 'writer' : job.kind === 'remote-gc' ? 'gc' : null;
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

  /**
   * PUTs one block read for upload and gives its buffer back to the run (the PUT has returned, so
   * its body was sent). Under the lease, a PUT that outlives it is aborted: a gc of another host
   * may by then take this writer for dead and sweep, and a block landing after its mark would be
   * relied on by the manifest (an early upload, before the lease, is asked about again: uploadBlocks).
   */
  private async sendBlock(run: UploadRun, hex: string, block: LoadedBlock): Promise<void> {
    const put = (signal: AbortSignal): Promise<void> => this.putBlock(run.store, run.remote, hex, block.data, signal);
    await (run.lease ? run.lease.whileHeld(run.ctl.signal, put) : put(run.ctl.signal));
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
  private async parentOnRemote(store: ObjectStore, remote: RemoteConfig, s: SnapshotRecord, local: Set<string> | null, ctl: JobControl): Promise<Iterable<string> | null> {
    const key = manifestKey(remote.prefix, s.diskId, s.parentId!);
    if (local !== null) return (await store.head(key, ctl.signal)) ? local : null;
    const raw = await store.get(key, ctl.signal);
    if (!raw) return null;
    try {
      const m = decodeManifest(raw, key);
      return distinctDigests(m.map, m.snapshot.sizeBytes, m.snapshot.blockSize).keys();
    } catch (err) {
      this.x.log.warn({ jobId: ctl.job.id, key, err: toBlocksnapError(err).message }, 'ignoring a damaged parent manifest; checking blocks one by one');
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
  isStaleJob(jobId: string): boolean {
    return this.x.jobs.ifRunning(jobId) === undefined && this.x.catalog.getJob(jobId) !== undefined;
  }
}

export function checkConcurrency(c: number | undefined): number {
  if (c === undefined) return DEFAULT_CONCURRENCY;
  if (!Number.isSafeInteger(c) || c < 1 || c > MAX_CONCURRENCY) throw new BlocksnapError('InvalidArgument', `concurrency must be an integer from 1 to ${MAX_CONCURRENCY}`);
  return c;
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
