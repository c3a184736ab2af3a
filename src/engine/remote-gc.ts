/**
 * Remote gc: mark-and-sweep under a gc lease (leases.ts), never deleting a block younger than the
 * grace. The rules that keep a bucket shared with other hosts' replications safe: docs/design.md
 * "Remote gc".
 */
import { BlocksnapError } from '../errors';
import type { RemoteConfig } from '../remote/config';
import { blockKey, digestOfKey, join, BLOCKS } from '../remote/layout';
import { Lease } from '../remote/leases';
import { distinctDigests } from '../stream/snapshot-fields';
import { newId } from './ids';
import type { JobControl } from './jobs';
import type { OffsiteInternals } from './offsite-internals';
import type { RemoteGcResult } from './offsite-types';
import { readManifests, type ManifestRead } from './remote-manifests';
import type { Replication } from './replication';
import type { Job } from './types';

/** Unreferenced remote blocks younger than this survive a gc (clock skew, writers that predate leases). */
export const DEFAULT_GC_GRACE_SECONDS = 3600;

export class RemoteGc {
  /** `replication`: the remotes, their object stores, and the leases of this daemon's replications, which gc waits out. */
  constructor(private readonly x: OffsiteInternals, private readonly replication: Replication) {}

  startRemoteGc(remoteName: string, o: { graceSeconds?: number } = {}): Job {
    this.x.assertOpen();
    const remote = this.replication.remotes.get(remoteName);
    const grace = o.graceSeconds ?? DEFAULT_GC_GRACE_SECONDS;
    if (!Number.isSafeInteger(grace) || grace < 0) throw new BlocksnapError('InvalidArgument', 'grace must be a whole number of seconds ≥ 0');
    return this.x.jobs.start(newId('j'), 'remote-gc', { diskId: null, snapshotId: null, target: remote.name }, (ctl) => this.runRemoteGc(remote, grace, ctl));
  }

  private async runRemoteGc(remote: RemoteConfig, graceSeconds: number, ctl: JobControl): Promise<RemoteGcResult> {
    const store = this.replication.open(remote);
    const started = Date.now();
    let lease: Lease | null = null;
    try {
      // A replication of this daemon that has just ended may still be deleting its lease: gc
      // would find it live and wait a poll period for it.
      await this.replication.settleReleases();
      lease = await Lease.gc(store, remote.prefix, this.replication.remotes.hostId, ctl.job.id, {
        timing: this.replication.leaseTiming, signal: ctl.signal, isStale: (id) => this.replication.isStaleJob(id),
        onWait: (w) => this.x.log.info({ remote: remote.name, jobId: ctl.job.id, writers: w.map((l) => `${l.host}/${l.jobId}`) }, 'remote gc waits for replications to finish'),
      });
      const waitedSeconds = Math.round((Date.now() - started) / 100) / 10;
      // Mark. A manifest that cannot be read makes the whole gc fail: what it references is unknown.
      const manifests = await readManifests(remote, store, ctl.signal);
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
      this.x.log.info({ jobId: ctl.job.id, ...res }, 'remote gc finished');
      return res;
    } finally {
      await lease?.release();
      store.close();
    }
  }
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
