/**
 * The way back from a remote: restore and import, each from one manifest (remote-manifests.ts).
 *
 * restore: manifest → a new raw file, every block verified against its digest before writing; or
 *   a new qcow2 file, written by the native writer from blocks staged (verified) in the store.
 * import: manifest → the local store (missing blocks only) and catalog (import-commit.ts); or,
 *   for a snapshot that is here with the manifest's map, the local snapshot's missing or damaged
 *   blocks written again, nothing committed (import-mend.ts).
 */
import { BlocksnapError } from '../errors';
import type { RemoteConfig } from '../remote/config';
import { findBlock, sha256Async, writeBlock } from '../store/block-io';
import { DIGEST_SIZE, isZeroDigest } from '../store/format';
import { blockKey } from '../remote/layout';
import type { Manifest } from '../remote/manifest';
import type { ObjectStore } from '../remote/object-store';
import { distinctDigests } from '../stream/snapshot-fields';
import { newId } from './ids';
import { checkImportDamage, checkImportable, commitImported, syncFoundBlocks } from './import-commit';
import { checkSameMap, damageOf, REMOTE_COPY, settleMend, snapshotToMend } from './import-mend';
import { asJobCancel, type JobControl } from './jobs';
import type { OffsiteInternals } from './offsite-internals';
import type { ImportResult, RestoreResult } from './offsite-types';
import { cloneImage } from './image-writes';
import { runPool } from './pool';
import { writeFully } from '../write-fully';
import { resolveNewFile } from './paths';
import { writePartial, type PartialAt } from './partial-files';
import { newFileFor, type UserAccess } from './user-access';
import { locate, usable } from './remote-manifests';
import { checkConcurrency, type Replication } from './replication';
import type { Job } from './types';
import type { SnapshotRecord } from '../catalog/records';

export class RemoteRestore {
  /** `replication`: the remotes and their object stores. */
  constructor(private readonly x: OffsiteInternals, private readonly replication: Replication) {}

  /** `o.user`: the client's rights, when it is neither root nor the daemon's user; the image is given to it. */
  startRestore(remoteName: string, snapRef: string, path: string, o: { format?: string; concurrency?: number; user?: UserAccess } = {}): Job {
    this.x.assertOpen();
    const remote = this.replication.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    const format = o.format ?? 'raw';
    if (format !== 'raw' && format !== 'qcow2') throw new BlocksnapError('InvalidArgument', `format must be "raw" or "qcow2", not ${JSON.stringify(format)}`);
    const target = newFileFor(o.user, path, () => resolveNewFile(path, this.x.imageRoots));
    const jobId = newId('j');
    return this.x.jobs.start(jobId, 'restore', { diskId: null, snapshotId: null, target }, async (ctl) => {
      const store = this.replication.open(remote);
      try {
        const { manifest } = usable(await locate(remote, store, snapRef, ctl.signal));
        ctl.recordSnapshot(manifest.snapshot.id);
        // Written under a partial name, given `target` once complete (partial-files.ts).
        const r = await writePartial(target, jobId, (partial, at) => (format === 'raw'
          ? this.runRestore(remote, store, manifest, partial, at, concurrency, ctl)
          : this.runRestoreQcow2(remote, store, manifest, partial, at, concurrency, ctl)), o.user);
        return { ...r, path: target };
      } catch (err) {
        // Published only once complete (writePartial): a cancelled restore never made the target.
        throw asJobCancel(err, ctl.signal, `; ${target} was not created`);
      } finally {
        store.close();
        // The target's directory stays held (newFileFor) until writePartial has opened it, or the job ends.
        o.user?.release();
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
    // The image is written counting the snapshot's data, as the native writer weighs it: counted
    // by the virtual size, the writing would restart the share done from a smaller one.
    const total = fetchTotal + dataBytes(m.map, s.sizeBytes, s.blockSize);
    const res: RestoreResult = { remote: remote.name, snapshotId: s.id, path: target, sizeBytes: s.sizeBytes, format: 'qcow2', downloadedBlocks: 0, downloadedBytes: 0 };
    const staged: Buffer[] = [];
    const releaseStore = await this.x.storeLock.acquireShared(ctl.signal);
    try {
      let done = 0;
      ctl.progress(0, total);
      const repaired: string[] = [];
      await runPool(digests.entries(), concurrency, async ([hex, len]) => {
        // A block listed as damaged here is downloaded too, and written over the damaged file (block-repair.ts).
        const repair = this.x.repair.damaged.has(Buffer.from(hex, 'hex'));
        const found = await findBlock(this.x.store.dir, hex, len);
        if (found.kind === 'otherLength') throw wrongLength(hex, len, found.length);
        // A file here of the wrong size is damage (recorded): the download is written over it.
        if (found.kind !== 'present' || repair) {
          const data = await fetchBlock(store, remote, s.id, hex, len, ctl.signal);
          res.downloadedBlocks++;
          res.downloadedBytes += data.length;
          const wrote = await writeBlock(this.x.store.dir, hex, data, { repair: repair || found.kind === 'damaged' });
          if (wrote === 'repaired') repaired.push(hex);
          else if (wrote === 'stored') staged.push(Buffer.from(hex, 'hex'));
        }
        done += len;
        ctl.progress(done, total);
      }, ctl.signal);
      this.x.repair.forgetRepaired(repaired, 'a remote', ctl.job.id);
      const w = await cloneImage(target, 'qcow2', {
        storeDir: this.x.store.dir, blockSize: s.blockSize, sizeBytes: s.sizeBytes, digests: m.map, signal: ctl.signal,
        onProgress: (d) => ctl.progress(fetchTotal + Math.min(d, total - fetchTotal), total),
      }, at);
      res.sizeBytes = w.sizeBytes;
      this.x.log.info({ jobId: ctl.job.id, remote: remote.name, snapshotId: s.id, path: target, format: 'qcow2', downloadedBytes: res.downloadedBytes }, 'restore finished');
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
        const data = await fetchBlock(store, remote, s.id, hex, blockLen(s.sizeBytes, s.blockSize, indexes[0]!), ctl.signal);
        res.downloadedBlocks++;
        res.downloadedBytes += data.length;
        for (const i of indexes) {
          await writeFully(file, data, i * s.blockSize, target);
          done += data.length;
        }
        ctl.progress(Math.min(done, total), total);
      }, ctl.signal);
      await file.complete();
      this.x.log.info({ jobId: ctl.job.id, remote: remote.name, snapshotId: s.id, path: target, downloadedBytes: res.downloadedBytes }, 'restore finished');
      return res;
    } finally {
      await file.close();
    }
  }

  startImport(remoteName: string, snapRef: string, diskRef: string, o: { concurrency?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.replication.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    const disk = this.x.resolveDisk(diskRef);
    const jobId = newId('j');
    const release = this.x.diskLocks.acquire(disk.id, jobId);
    try {
      return this.x.jobs.start(jobId, 'import', { diskId: disk.id, snapshotId: null, target: remote.name }, async (ctl): Promise<ImportResult> => {
        const store = this.replication.open(remote);
        try {
          const { manifest: m } = usable(await locate(remote, store, snapRef, ctl.signal));
          ctl.recordSnapshot(m.snapshot.id);
          // A remote copy of a snapshot that is here mends it (import-mend.ts): no quota counts.
          const mending = snapshotToMend(this.x, m.snapshot, disk.id, REMOTE_COPY);
          if (mending) {
            checkSameMap(this.x, mending, m.map, REMOTE_COPY);
            return await this.mend(remote, store, m, mending, concurrency, ctl);
          }
          checkImportable(this.x, m.snapshot, this.x.catalog.getDisk(disk.id)!);
          // Shared store lock from the first block written to the commit: the sweeper and gc must not
          // unlink a block this import found present and will reference.
          const releaseStore = await this.x.storeLock.acquireShared(ctl.signal);
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
            const res: ImportResult = { snapshotId: m.snapshot.id, diskId: disk.id, parentId: null, name: m.snapshot.name, renamedFrom: null, storedBlocks: 0, storedBytes: 0, presentBlocks: 0, repairedBlocks: 0, mended: false };
            let done = 0;
            ctl.progress(0, total);
            await runPool(digests.entries(), concurrency, async ([hex, len]) => {
              // A block listed as damaged here is downloaded all the same, and written over the damaged file.
              const repair = this.x.repair.damaged.has(Buffer.from(hex, 'hex'));
              const found = await findBlock(this.x.store.dir, hex, len);
              if (found.kind === 'otherLength') throw wrongLength(hex, len, found.length);
              if (found.kind === 'present' && !repair) {
                res.presentBlocks++;
                present.push(hex);
              } else {
                // A file here of the wrong size is damage (recorded): the download is written over it.
                const data = await fetchBlock(store, remote, m.snapshot.id, hex, len, ctl.signal);
                const wrote = await writeBlock(this.x.store.dir, hex, data, { repair: repair || found.kind === 'damaged' });
                if (wrote !== 'present') {
                  stored.push(Buffer.from(hex, 'hex'));
                  if (wrote === 'repaired') {
                    repaired.push(hex);
                    res.repairedBlocks++;
                  } else {
                    res.storedBlocks++;
                    res.storedBytes += data.length;
                  }
                } else {
                  res.presentBlocks++;
                  present.push(hex);
                }
              }
              done += len;
              ctl.progress(done, total);
            }, ctl.signal);
            await syncFoundBlocks(this.x, present);
            await checkImportDamage(this.x, m.map, repaired, ctl);
            const rec = commitImported(this.x, this.x.catalog.getDisk(disk.id)!, m.snapshot, m.map, jobId, repaired);
            committed = true;
            res.parentId = rec.parentId;
            res.name = rec.name;
            res.renamedFrom = rec.name === m.snapshot.name ? null : m.snapshot.name;
            this.x.log.info({ jobId, remote: remote.name, snapshotId: rec.id, diskId: disk.id, storedBytes: res.storedBytes }, 'snapshot imported from remote');
            return res;
          } finally {
            releaseStore();
            if (!committed) this.x.releaseOrphans(stored);
          }
        } catch (err) {
          throw asJobCancel(err, ctl.signal);
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

  /**
   * The local snapshot `here`, whose view is the manifest's map: its blocks found missing or
   * damaged are downloaded (each checked against its digest: RemoteCorrupt otherwise) and written
   * over, under the shared store lock from before the check until the last is renamed. Downloads
   * nothing for a block present and sound; commits nothing.
   */
  private async mend(remote: RemoteConfig, store: ObjectStore, m: Manifest, here: SnapshotRecord, concurrency: number, ctl: JobControl): Promise<ImportResult> {
    const s = m.snapshot;
    const res: ImportResult = {
      snapshotId: s.id, diskId: here.diskId, parentId: null, name: s.name, renamedFrom: null, storedBlocks: 0, storedBytes: 0, presentBlocks: 0, repairedBlocks: 0, mended: true,
    };
    const releaseStore = await this.x.storeLock.acquireShared(ctl.signal);
    /** Written again (hex): their repair marks go once all are. */
    const repaired: string[] = [];
    try {
      const digests = distinctDigests(m.map, s.sizeBytes, s.blockSize);
      const damaged = await damageOf(this.x, digests.keys(), ctl.signal);
      res.presentBlocks = digests.size - damaged.size;
      const total = [...damaged.keys()].reduce((a, hex) => a + digests.get(hex)!, 0);
      let done = 0;
      ctl.progress(0, total);
      await runPool(damaged.keys(), concurrency, async (hex) => {
        const len = digests.get(hex)!;
        const data = await fetchBlock(store, remote, s.id, hex, len, ctl.signal);
        await writeBlock(this.x.store.dir, hex, data, { repair: true });
        repaired.push(hex);
        res.repairedBlocks++;
        done += len;
        ctl.progress(done, total);
      }, ctl.signal);
    } finally {
      releaseStore();
    }
    settleMend(this.x, here, s.name, res, repaired, `remote ${remote.name}`, ctl.job.id);
    this.x.log.info({ jobId: ctl.job.id, remote: remote.name, snapshotId: s.id, diskId: here.diskId, repairedBlocks: res.repairedBlocks }, 'snapshot mended from a remote copy of itself');
    return res;
  }
}

function blockLen(sizeBytes: number, blockSize: number, index: number): number {
  return Math.min(blockSize, sizeBytes - index * blockSize);
}

/** The bytes of the blocks that are not ZERO, repeats included: what writing the image reads. */
function dataBytes(map: Buffer, sizeBytes: number, blockSize: number): number {
  let n = 0;
  for (let i = 0; i * DIGEST_SIZE < map.length; i++) if (!isZeroDigest(map, i * DIGEST_SIZE)) n += blockLen(sizeBytes, blockSize, i);
  return n;
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

/** A manifest that puts a block this host has intact where its length cannot fit: forged, or corrupt past its checksum. */
function wrongLength(hex: string, len: number, have: number): Error {
  return new BlocksnapError('RemoteCorrupt', `the manifest puts block ${hex} at a position of ${len} bytes; the block this host has under that digest has ${have}`, { digest: hex });
}

/**
 * Downloads one block and checks it against its digest and expected length before anyone uses it.
 * A block damaged or lost in the bucket fails the job with the way out: a host that holds the
 * block (one that replicated the snapshot) uploads it again.
 */
async function fetchBlock(store: ObjectStore, remote: RemoteConfig, snapshotId: string, hex: string, length: number, signal?: AbortSignal): Promise<Buffer> {
  const key = blockKey(remote.prefix, hex);
  const data = await store.get(key, signal);
  const repair = `; on a host that holds the block, \`blocksnap remote verify ${remote.name} ${snapshotId} --repair\` uploads it again`;
  if (!data) throw new BlocksnapError('RemoteCorrupt', `block ${key} named by a manifest is missing from the remote${repair}`, { key, digest: hex });
  if (data.length !== length || (await sha256Async(data)).toString('hex') !== hex) {
    throw new BlocksnapError('RemoteCorrupt', `block ${key} does not match its digest (${data.length} bytes): nothing was written from it${repair}`, { key, digest: hex });
  }
  return data;
}
