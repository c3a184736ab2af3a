/**
 * Remote verify: reads every block that a remote's snapshots (or one of them) reference and checks
 * it against its digest, so that damage in the bucket (bit rot, a truncated or lost object) is
 * found before a restore needs the block. Replication never reads a block back: it asks only
 * whether one exists, so a damaged block stays damaged however often the snapshot is replicated.
 *
 * repair: a damaged or missing block this host holds intact is uploaded again, over the damaged
 * object, signed with its digest as the payload hash (the storage refuses a body that does not
 * match), and under a writer lease like any replication's block (docs/design.md "Remote gc"): no
 * gc of any host sweeps while it lives, and an upload that outlives it is aborted. The local
 * copies are read first, up to REPAIR_BATCH_BYTES at a time, and the lease is taken only for
 * uploading what was read: reading waits for the local store lock (behind a gc of this store, say),
 * and a lease held meanwhile would hold off the bucket's gc on every host.
 */
import { toBlocksnapError } from '../errors';
import type { RemoteConfig } from '../remote/config';
import { blockKey } from '../remote/layout';
import { Lease } from '../remote/leases';
import type { ObjectStore } from '../remote/object-store';
import { presentBlockLength, readBlock, sha256Async } from '../store/block-io';
import { DigestSet } from '../store/digest-set';
import { DIGEST_SIZE, isZeroDigest } from '../store/format';
import { blockLengthAt } from '../stream/snapshot-fields';
import { newId } from './ids';
import type { JobControl } from './jobs';
import type { OffsiteInternals } from './offsite-internals';
import type { RemoteBlockProblem, RemoteVerifyResult } from './offsite-types';
import { runPool } from './pool';
import { locate, manifestKeys, readManifestAt, usable, type ManifestRead } from './remote-manifests';
import { checkConcurrency, type Replication } from './replication';
import type { Job } from './types';

/** Bytes of local blocks read ahead of one writer lease: memory, against leases taken. */
export const REPAIR_BATCH_BYTES = 64 * 1024 * 1024;

export class RemoteVerify {
  /** `replication`: the remotes, their object stores and lease timing. */
  constructor(private readonly x: OffsiteInternals, private readonly replication: Replication) {}

  /** Every snapshot of the remote, or the one `snapRef` names (a damaged manifest of it is refused, as restore does). */
  startRemoteVerify(remoteName: string, snapRef?: string, o: { repair?: boolean; concurrency?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.replication.remotes.get(remoteName);
    const concurrency = checkConcurrency(o.concurrency);
    return this.x.jobs.start(newId('j'), 'remote-verify', { diskId: null, snapshotId: null, target: remote.name },
      (ctl) => this.runVerify(remote, snapRef, o.repair === true, concurrency, ctl));
  }

  private async runVerify(remote: RemoteConfig, snapRef: string | undefined, repair: boolean, concurrency: number, ctl: JobControl): Promise<RemoteVerifyResult> {
    const store = this.replication.open(remote);
    try {
      const res: RemoteVerifyResult = { remote: remote.name, snapshots: 0, checkedBlocks: 0, checkedBytes: 0, problems: [], damagedManifests: [] };
      // Manifests are read one at a time, and each block is checked under the first that names
      // it: what stays in memory is the set of digests checked (DigestSet) and the problems found,
      // never every map at once (a bucket's maps can be many gigabytes). A problem, kept with the
      // length its block must have for repair's batches, gains each later snapshot that needs it.
      const checked = new DigestSet();
      const bad = new Map<string, { problem: RemoteBlockProblem; length: number }>();
      // Grows as each manifest is read: how many blocks are left is known only at the last one.
      let total = 0;
      const checkManifest = async (m: ManifestRead): Promise<void> => {
        if (m.damage !== null) res.damagedManifests.push(m.key);
        if (m.manifest === null) return;
        res.snapshots++;
        const { snapshot: s, map } = m.manifest;
        const fresh: number[] = [];
        for (let at = 0; at < map.length; at += DIGEST_SIZE) {
          if (isZeroDigest(map, at)) continue;
          if (checked.add(map, at)) fresh.push(at / DIGEST_SIZE);
          else if (bad.size > 0) {
            const b = bad.get(map.toString('hex', at, at + DIGEST_SIZE));
            if (b !== undefined && b.problem.snapshots.at(-1) !== s.id) b.problem.snapshots.push(s.id);
          }
        }
        total += fresh.length;
        ctl.progress(res.checkedBlocks, total);
        await runPool(fresh, concurrency, async (i) => {
          const hex = map.toString('hex', i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE);
          const length = blockLengthAt(i, s.sizeBytes, s.blockSize);
          const key = blockKey(remote.prefix, hex);
          const problem = await checkBlock(store, key, hex, length, ctl.signal);
          if (problem !== null) bad.set(hex, { problem: { digest: hex, key, problem, snapshots: [s.id], repaired: false }, length });
          res.checkedBlocks++;
          res.checkedBytes += length;
          ctl.progress(res.checkedBlocks, total);
        }, ctl.signal);
      };
      if (snapRef !== undefined) {
        const m = await locate(remote, store, snapRef, ctl.signal);
        usable(m);
        await checkManifest(m);
      } else {
        for (const key of await manifestKeys(remote, store, ctl.signal)) {
          const m = await readManifestAt(store, key, ctl.signal);
          if (m !== null) await checkManifest(m);
        }
      }
      res.problems = [...bad.values()].map((b) => b.problem).sort((a, b) => a.key.localeCompare(b.key));
      if (res.problems.length > 0) {
        this.x.log.warn({ remote: remote.name, jobId: ctl.job.id, damaged: res.problems.length, first: res.problems[0]!.key }, 'remote verify found damaged or missing blocks');
      }
      if (repair) {
        for (const batch of batches(res.problems, (p) => bad.get(p.digest)!.length, REPAIR_BATCH_BYTES)) {
          await this.repairBatch(remote, store, batch, concurrency, ctl);
        }
      }
      return res;
    } finally {
      store.close();
    }
  }

  /** Uploads again, under one writer lease, those of `problems` this host holds intact. */
  private async repairBatch(remote: RemoteConfig, store: ObjectStore, problems: RemoteBlockProblem[], concurrency: number, ctl: JobControl): Promise<void> {
    const found: Array<{ p: RemoteBlockProblem; data: Buffer }> = [];
    await runPool(problems, concurrency, async (p) => {
      const data = await this.intactLocalBlock(p.digest, ctl.signal);
      if (data !== null) found.push({ p, data });
    }, ctl.signal);
    if (found.length === 0) return;
    const lease = await Lease.writer(store, remote.prefix, this.replication.remotes.hostId, ctl.job.id, {
      timing: this.replication.leaseTiming, signal: ctl.signal, isStale: (id) => this.replication.isStaleJob(id),
    });
    try {
      await runPool(found, concurrency, async ({ p, data }) => {
        await lease.whileHeld(ctl.signal, (signal) => store.put(p.key, data, signal, { sha256: p.digest }));
        p.repaired = true;
        this.x.log.info({ remote: remote.name, jobId: ctl.job.id, key: p.key }, 'remote block uploaded again');
      }, ctl.signal);
    } finally {
      await lease.release();
    }
  }

  /**
   * This host's copy of a block, verified; null when it has none, or a damaged one (listed for
   * repair by the read). Read under the shared store lock: a sweep unlinking the block between
   * the look and the read would have it listed as missing from the store.
   */
  private async intactLocalBlock(hex: string, signal: AbortSignal): Promise<Buffer | null> {
    const release = await this.x.storeLock.acquireShared(signal);
    try {
      // A block this host never had is not a damaged one of its store: not read, so not listed.
      if ((await presentBlockLength(this.x.store.dir, hex)) === null) return null;
      return await readBlock(this.x.store.dir, hex);
    } catch (err) {
      const code = toBlocksnapError(err).code;
      if (code === 'BlockMissing' || code === 'BlockCorrupt' || code === 'DigestMismatch') return null;
      throw err;
    } finally {
      release();
    }
  }
}

/** `items` in order, cut into runs of at most `limit` bytes each (a longer item alone). */
export function batches<T>(items: T[], bytesOf: (item: T) => number, limit: number): T[][] {
  const out: T[][] = [];
  let run: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = bytesOf(item);
    if (run.length > 0 && bytes + n > limit) {
      out.push(run);
      run = [];
      bytes = 0;
    }
    run.push(item);
    bytes += n;
  }
  if (run.length > 0) out.push(run);
  return out;
}

/** What is wrong with one remote block: null when it is there with the length and digest its manifests give. */
async function checkBlock(store: ObjectStore, key: string, hex: string, length: number, signal: AbortSignal): Promise<RemoteBlockProblem['problem'] | null> {
  const data = await store.get(key, signal);
  if (data === null) return 'missing';
  if (data.length !== length || (await sha256Async(data)).toString('hex') !== hex) return 'damaged';
  return null;
}
