/**
 * Replication of snapshot chains to an S3-compatible remote, and the way back (restore, import),
 * plus remote deletion and gc. Layout and manifest: src/remote/layout.ts and manifest.ts; the
 * rules that keep a shared bucket safe: docs/design.md "Remotes".
 *
 * replicate: for each snapshot, oldest first, skip it when its manifest exists; otherwise upload
 *   the blocks of its view the remote lacks, then the manifest, last. A block is known present
 *   when the remote manifest of the snapshot's parent names it (a manifest implies its blocks, and
 *   gc cannot run while our writer lease lives) or when a HEAD finds it; so an incremental
 *   snapshot costs HEADs and PUTs for its changed blocks only, and a rerun after a crash skips
 *   what the first run uploaded (content addressing makes every upload idempotent).
 * restore: manifest → a new raw file, every block verified against its digest before writing; or
 *   a new qcow2 file, written by the native writer from blocks staged (verified) in the store.
 * import: manifest → the local store (missing blocks only) and catalog (import-commit.ts).
 * gc: mark-and-sweep under a gc lease (leases.ts), never deleting a block younger than the grace.
 *
 * Memory: 2 × `concurrency` blocks at most (each upload slot reads its next block while it sends
 * one), plus one packed map per snapshot.
 */
import { constants } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { readView } from '../catalog/block-map';
import type { SnapshotRecord } from '../catalog/records';
import { hasBlock, readBlock, sha256Async, writeBlock } from '../store/block-io';
import { DIGEST_SIZE, isZeroDigest } from '../store/format';
import {
  readCredentials, validateBucket, validateEndpoint, validatePrefix, validateRegion, validateRemoteName, type RemoteConfig,
} from '../remote/config';
import { blockKey, digestOfKey, idsOfManifestKey, join, manifestKey, BLOCKS, MANIFESTS } from '../remote/layout';
import { DEFAULT_LEASE_TIMING, Lease, type LeaseTiming } from '../remote/leases';
import { decodeManifest, distinctDigests, encodeManifest, type Manifest } from '../remote/manifest';
import type { ObjectStore } from '../remote/object-store';
import { RemoteRegistry } from '../remote/registry';
import { S3Store } from '../remote/s3-store';
import { looksLikeId, newId } from './ids';
import { checkImportable, commitImported } from './import-commit';
import type { JobControl } from './jobs';
import type { OffsiteInternals } from './offsite-internals';
import type {
  ImportResult, Remote, RemoteCheck, RemoteGcResult, RemoteSnapshot, ReplicateResult, RestoreResult,
} from './offsite-types';
import { cloneImage } from './image-writes';
import { runPipelined, runPool } from './pool';
import { resolveNewFile } from './paths';
import type { Job } from './types';

export const DEFAULT_CONCURRENCY = 4;
export const MAX_CONCURRENCY = 64;
/** HEADs in flight per upload slot while looking for the blocks a remote lacks. */
const HEAD_FANOUT = 4;
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

export class Replication {
  readonly remotes: RemoteRegistry;
  private readonly leaseTiming: LeaseTiming;
  private readonly openStoreFn: (remote: RemoteConfig, onRetry: () => void) => ObjectStore;

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

  async remoteSnapshots(name: string, diskRef?: string): Promise<RemoteSnapshot[]> {
    const r = this.remotes.get(name);
    const store = this.open(r);
    try {
      const all = await this.readManifests(r, store);
      const out = all.map(({ key, manifest: m }) => describe(key, m))
        .filter((s) => diskRef === undefined || s.diskId === diskRef || s.diskName === diskRef);
      return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    } finally {
      store.close();
    }
  }

  async deleteRemoteSnapshot(name: string, snapRef: string): Promise<RemoteSnapshot> {
    this.x.assertOpen();
    const r = this.remotes.get(name);
    const store = this.open(r);
    try {
      const found = await this.locate(r, store, snapRef);
      await store.deleteMany([found.key]);
      this.x.log.info({ remote: r.name, snapshotId: found.manifest.snapshot.id }, 'remote snapshot deleted; remote gc frees its blocks');
      return describe(found.key, found.manifest);
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
    let lease: Lease | null = null;
    try {
      lease = await Lease.writer(store, remote.prefix, this.remotes.hostId, ctl.job.id, {
        timing: this.leaseTiming, keepJobs: this.runningJobIds(), signal: ctl.signal,
      });
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
      /** Digests known to be on the remote: named by a manifest there, or uploaded/found by this job. */
      const present = new Set<string>();
      const credited = new Set<string>();
      const credit = (hex: string, len: number): void => {
        if (credited.has(hex)) return;
        credited.add(hex);
        done += len;
        ctl.progress(done, total);
      };
      for (const s of snaps) {
        const key = manifestKey(remote.prefix, s.diskId, s.id);
        const view = views.get(s.id)!;
        const digests = distinctDigests(view, s.sizeBytes, s.blockSize);
        if (await store.head(key, ctl.signal)) {
          res.alreadyPresent.push(s.id);
          for (const [hex, len] of digests) { present.add(hex); credit(hex, len); }
          continue;
        }
        if (s.parentId) await this.learnFromManifest(store, manifestKey(remote.prefix, s.diskId, s.parentId), present, ctl.signal);
        const todo: Array<[string, number]> = [];
        for (const [hex, len] of digests) {
          if (present.has(hex)) { res.skippedBlocks++; credit(hex, len); } else todo.push([hex, len]);
        }
        // HEADs first, wider (they carry no body, so memory stays bounded by the PUT phase), so
        // that the uploads then run back to back like plain PUTs.
        const missing: Array<[string, number]> = [];
        await runPool(todo, Math.min(MAX_CONCURRENCY, concurrency * HEAD_FANOUT), async ([hex, len]) => {
          if (await store.head(blockKey(remote.prefix, hex), ctl.signal)) {
            res.skippedBlocks++;
            present.add(hex);
            credit(hex, len);
          } else {
            missing.push([hex, len]);
          }
        }, ctl.signal);
        await runPipelined(missing, concurrency, ([hex]) => readBlock(this.x.store.dir, hex), async ([hex, len], data) => {
          await store.put(blockKey(remote.prefix, hex), data, ctl.signal, { sha256: hex });
          res.uploadedBlocks++;
          res.uploadedBytes += data.length;
          present.add(hex);
          credit(hex, len);
        }, ctl.signal);
        // The manifest is the commit point: only now, and only while our lease is certainly live.
        lease.assertHeld();
        const disk = this.x.catalog.getDisk(s.diskId);
        const body = encodeManifest({
          snapshot: {
            id: s.id, diskId: s.diskId, diskName: disk?.name ?? s.diskId, name: s.name, description: s.description, type: s.type,
            parentId: s.parentId, createdAt: s.createdAt, completedAt: s.completedAt, sizeBytes: s.sizeBytes, blockSize: s.blockSize,
            blockCount: s.blockCount, logicalBytes: s.logicalBytes,
          },
          host: this.remotes.hostId, replicatedAt: new Date().toISOString(), map: view,
        });
        await store.put(key, body, ctl.signal);
        res.manifestBytes += body.length;
        res.replicated.push(s.id);
        this.x.log.info({ remote: remote.name, snapshotId: s.id, uploadedBlocks: res.uploadedBlocks, uploadedBytes: res.uploadedBytes }, 'snapshot replicated');
      }
      ctl.progress(total, total);
      return res;
    } finally {
      await lease?.release();
      store.close();
    }
  }

  /** Adds the digests of a remote manifest to `present`; a missing or unreadable one teaches nothing. */
  private async learnFromManifest(store: ObjectStore, key: string, present: Set<string>, signal: AbortSignal): Promise<void> {
    const raw = await store.get(key, signal);
    if (!raw) return;
    let m: Manifest;
    try {
      m = decodeManifest(raw, key);
    } catch (err) {
      this.x.log.warn({ key, err: toBlocksnapError(err).message }, 'ignoring a damaged parent manifest; checking blocks one by one');
      return;
    }
    for (const hex of distinctDigests(m.map, m.snapshot.sizeBytes, m.snapshot.blockSize).keys()) present.add(hex);
  }

  private runningJobIds(): Set<string> {
    return new Set(this.x.jobs.list().filter((j) => j.state === 'running').map((j) => j.id));
  }

  // ------------------------------------------------------------ restore and import

  startRestore(remoteName: string, snapRef: string, path: string, o: { format?: string; concurrency?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    const format = o.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw new BlocksnapError('InvalidArgument', `format must be "raw" or "qcow2", not ${JSON.stringify(format)}`);
    const target = resolveNewFile(path, this.x.imageRoots);
    return this.x.jobs.start(newId('j'), 'restore', { diskId: null, snapshotId: null, target }, async (ctl) => {
      const store = this.open(remote);
      try {
        const { manifest } = await this.locate(remote, store, snapRef, ctl.signal);
        return format === 'raw'
          ? await this.runRestore(remote, store, manifest, target, concurrency, ctl)
          : await this.runRestoreQcow2(remote, store, manifest, target, concurrency, ctl);
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
  private async runRestoreQcow2(remote: RemoteConfig, store: ObjectStore, m: Manifest, target: string, concurrency: number, ctl: JobControl): Promise<RestoreResult> {
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
      await runPool(digests.entries(), concurrency, async ([hex, len]) => {
        if (!(await hasBlock(this.x.store.dir, hex))) {
          const data = await fetchBlock(store, remote.prefix, hex, len, ctl.signal);
          res.downloadedBlocks++;
          res.downloadedBytes += data.length;
          if (await writeBlock(this.x.store.dir, hex, data)) staged.push(Buffer.from(hex, 'hex'));
        }
        done += len;
        ctl.progress(done, total);
      }, ctl.signal);
      const w = await cloneImage(target, 'qcow2', {
        storeDir: this.x.store.dir, blockSize: s.blockSize, sizeBytes: s.sizeBytes, digests: m.map, signal: ctl.signal,
        onProgress: (d) => ctl.progress(fetchTotal + Math.min(d, s.sizeBytes), total),
      });
      res.sizeBytes = w.sizeBytes;
      this.x.log.info({ remote: remote.name, snapshotId: s.id, path: target, format: 'qcow2', downloadedBytes: res.downloadedBytes }, 'restore finished');
      return res;
    } finally {
      releaseStore();
      this.x.releaseOrphans(staged);
    }
  }

  private async runRestore(remote: RemoteConfig, store: ObjectStore, m: Manifest, target: string, concurrency: number, ctl: JobControl): Promise<RestoreResult> {
    const s = m.snapshot;
    const where = groupByDigest(m.map);
    const total = s.logicalBytes || [...where.values()].reduce((a, idx) => a + idx.length * s.blockSize, 0);
    const file = await open(target, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    let ok = false;
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
          const { bytesWritten } = await file.write(data, 0, data.length, i * s.blockSize);
          if (bytesWritten !== data.length) throw new BlocksnapError('IOError', `short write to ${target}`);
          done += data.length;
        }
        ctl.progress(Math.min(done, total), total);
      }, ctl.signal);
      await file.sync();
      ok = true;
      this.x.log.info({ remote: remote.name, snapshotId: s.id, path: target, downloadedBytes: res.downloadedBytes }, 'restore finished');
      return res;
    } finally {
      await file.close();
      if (!ok) await unlink(target).catch(() => undefined);
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
          const { manifest: m } = await this.locate(remote, store, snapRef, ctl.signal);
          checkImportable(this.x, m.snapshot, this.x.catalog.getDisk(disk.id)!);
          // Shared store lock from the first block written to the commit: the sweeper and gc must not
          // unlink a block this import found present and will reference.
          const releaseStore = await this.x.storeLock.acquireShared();
          /** Blocks this import added to the store: handed to the sweeper if it fails. */
          const stored: Buffer[] = [];
          let committed = false;
          try {
            const digests = distinctDigests(m.map, m.snapshot.sizeBytes, m.snapshot.blockSize);
            const total = [...digests.values()].reduce((a, b) => a + b, 0);
            const res: ImportResult = { snapshotId: m.snapshot.id, diskId: disk.id, parentId: null, storedBlocks: 0, storedBytes: 0, presentBlocks: 0 };
            let done = 0;
            ctl.progress(0, total);
            await runPool(digests.entries(), concurrency, async ([hex, len]) => {
              if (await hasBlock(this.x.store.dir, hex)) {
                res.presentBlocks++;
              } else {
                const data = await fetchBlock(store, remote.prefix, hex, len, ctl.signal);
                if (await writeBlock(this.x.store.dir, hex, data)) {
                  stored.push(Buffer.from(hex, 'hex'));
                  res.storedBlocks++;
                  res.storedBytes += data.length;
                } else res.presentBlocks++;
              }
              done += len;
              ctl.progress(done, total);
            }, ctl.signal);
            const rec = commitImported(this.x, this.x.catalog.getDisk(disk.id)!, m.snapshot, m.map, jobId);
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
      lease = await Lease.gc(store, remote.prefix, this.remotes.hostId, ctl.job.id, {
        timing: this.leaseTiming, signal: ctl.signal,
        onWait: (w) => this.x.log.info({ remote: remote.name, writers: w.map((l) => `${l.host}/${l.jobId}`) }, 'remote gc waits for replications to finish'),
      });
      const waitedSeconds = Math.round((Date.now() - started) / 100) / 10;
      // Mark. A manifest that cannot be read makes the whole gc fail: what it references is unknown.
      const manifests = await this.readManifests(remote, store, ctl.signal);
      const referenced = new Set<string>();
      for (const { manifest: m } of manifests) {
        for (const hex of distinctDigests(m.map, m.snapshot.sizeBytes, m.snapshot.blockSize).keys()) referenced.add(hex);
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
        lease!.assertHeld();
        await store.deleteMany(batch, ctl.signal);
        res.deletedBlocks += batch.length;
        res.deletedBytes += batchBytes;
        batch = [];
        batchBytes = 0;
      };
      for await (const o of store.list(`${join(remote.prefix, BLOCKS)}/`, ctl.signal)) {
        const hex = digestOfKey(o.key);
        if (hex === null) continue;
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

  private async readManifests(remote: RemoteConfig, store: ObjectStore, signal?: AbortSignal): Promise<Located[]> {
    const out: Located[] = [];
    for await (const o of store.list(`${join(remote.prefix, MANIFESTS)}/`, signal)) {
      if (!idsOfManifestKey(o.key)) continue;
      const raw = await store.get(o.key, signal);
      if (raw) out.push({ key: o.key, manifest: decodeManifest(raw, o.key) });
    }
    return out;
  }

  /** A remote snapshot by id (one LIST) or by unique name (reads the manifests). */
  private async locate(remote: RemoteConfig, store: ObjectStore, ref: string, signal?: AbortSignal): Promise<Located> {
    if (typeof ref !== 'string' || ref.length === 0) throw new BlocksnapError('InvalidArgument', 'a snapshot id or name is required');
    if (looksLikeId('s', ref)) {
      for await (const o of store.list(`${join(remote.prefix, MANIFESTS)}/`, signal)) {
        if (idsOfManifestKey(o.key)?.snapshotId !== ref) continue;
        const raw = await store.get(o.key, signal);
        if (raw) return { key: o.key, manifest: decodeManifest(raw, o.key) };
      }
    } else {
      const byName = (await this.readManifests(remote, store, signal)).filter((l) => l.manifest.snapshot.name === ref);
      if (byName.length === 1) return byName[0]!;
      if (byName.length > 1) {
        throw new BlocksnapError('AmbiguousName', `${byName.length} snapshots on remote ${remote.name} are named ${JSON.stringify(ref)} (${byName.map((l) => l.manifest.snapshot.id).join(', ')}); use the id`);
      }
    }
    throw new BlocksnapError('SnapshotNotFound', `remote ${remote.name} has no snapshot ${JSON.stringify(ref)}`);
  }
}

function describe(key: string, m: Manifest): RemoteSnapshot {
  const s = m.snapshot;
  return {
    id: s.id, diskId: s.diskId, diskName: s.diskName, name: s.name, description: s.description, parentId: s.parentId, createdAt: s.createdAt,
    sizeBytes: s.sizeBytes, blockSize: s.blockSize, logicalBytes: s.logicalBytes, host: m.host, replicatedAt: m.replicatedAt, key,
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
async function fetchBlock(store: ObjectStore, prefix: string, hex: string, length: number, signal?: AbortSignal): Promise<Buffer> {
  const key = blockKey(prefix, hex);
  const data = await store.get(key, signal);
  if (!data) throw new BlocksnapError('RemoteCorrupt', `block ${key} named by a manifest is missing from the remote`, { key, digest: hex });
  if (data.length !== length || (await sha256Async(data)).toString('hex') !== hex) {
    throw new BlocksnapError('RemoteCorrupt', `block ${key} does not match its digest (${data.length} bytes): nothing was written from it`, { key, digest: hex });
  }
  return data;
}
