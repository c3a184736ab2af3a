/**
 * The soak: 16 clients on their own connections, 8 disks, a bounded time of mixed snapshot,
 * delete, rollback, clone and listing calls (plus a guest-like writer per call, gc and verify now
 * and then). Checked:
 *  - no deadlock: every call answers within a deadline;
 *  - every refusal is a documented code that concurrency explains (DiskBusy, SnapshotBusy, ...),
 *    and every job ends succeeded;
 *  - at the end `store gc` and `store verify` are clean and every available snapshot clones
 *    (each block verified against its digest);
 *  - the daemon's RSS stays under a bound.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonClient } from '../../src/daemon/client';
import { isErrorCode } from '../../src/errors';
import type { Job, Snapshot, VerifyResult } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout, sleep } from '../crash/daemon-process';
import { ImageWriter } from '../crash/disk-image';
import { Random } from '../helpers/random';

export interface SoakOptions {
  seconds: number;
  dir: string;
  seed: number;
  clients?: number;
  disks?: number;
  maxRssBytes?: number;
  log?: (line: string) => void;
}

export interface SoakStats {
  seed: number;
  seconds: number;
  calls: number;
  jobs: number;
  /** Refusals by code. */
  refusals: Record<string, number>;
  snapshotsCreated: number;
  rollbacks: number;
  clones: number;
  deletes: number;
  finalSnapshots: number;
  rssMaxBytes: number;
  slowestCallMs: number;
}

export class SoakFailure extends Error {}

/** What concurrent clients legitimately run into. Anything else is a bug. */
const EXPECTED_REFUSALS = new Set(['DiskBusy', 'SnapshotBusy', 'SnapshotNotFound', 'SnapshotNotAvailable']);
/**
 * A deadlock is a call that never answers. On a shared machine an fsync can wait a long time
 * behind another process's gigabytes of writeback (ext4 ordered mode), and the catalog's commit
 * fsyncs on the daemon's main thread, so a slow minute is not proof: the deadline is generous,
 * and a failure dumps the daemon's thread stacks to tell a wait on I/O from a wait on a lock.
 */
const CALL_DEADLINE_MS = 180_000;
/**
 * How long a run may go on past its time while some kind of operation has not run yet or no two
 * clients have collided on a busy disk: a stalled fsync holds every call, and can take most of a
 * short run before any of it has happened.
 */
const OVERTIME_MS = 300_000;
const BLOCK = 64 * 1024;

export async function runSoak(o: SoakOptions): Promise<SoakStats> {
  const rng = new Random(o.seed);
  const layout = makeLayout(o.dir, { blockSize: BLOCK });
  const images = new ImageWriter(BLOCK);
  const disks = Array.from({ length: o.disks ?? 8 }, (_, i) => `disk${i}`);
  const maxRss = o.maxRssBytes ?? 512 * 1024 * 1024;
  const stats: SoakStats = {
    seed: o.seed, seconds: o.seconds, calls: 0, jobs: 0, refusals: {}, snapshotsCreated: 0, rollbacks: 0, clones: 0, deletes: 0,
    finalSnapshots: 0, rssMaxBytes: 0, slowestCallMs: 0,
  };
  const daemon = await DaemonProcess.start(layout);
  let failure: SoakFailure | null = null;
  const fail = (message: string): never => {
    failure ??= new SoakFailure(`soak (seed ${o.seed}): ${message}\n--- daemon log tail ---\n${daemon.stderr().slice(-3000)}`);
    throw failure;
  };
  const clients: DaemonClient[] = [];
  try {
    const admin = await connect(layout);
    clients.push(admin);
    for (const name of disks) {
      const path = join(layout.imageRoot, `${name}.img`);
      images.create(path, 16, rng);
      await admin.call('disk.add', { path, name });
    }

    /** A call with a deadline; a refusal is counted if expected, fatal otherwise. */
    const call = async <T>(c: DaemonClient, method: string, params: Record<string, unknown>): Promise<T | null> => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new SoakFailure(`${method} ${JSON.stringify(params)} did not answer within ${CALL_DEADLINE_MS} ms: deadlock?`)), CALL_DEADLINE_MS);
      });
      try {
        const r = await Promise.race([c.call<T>(method, params), deadline]);
        return r;
      } catch (err) {
        if (err instanceof SoakFailure) {
          const stacks = join(o.dir, 'daemon-stacks.txt');
          daemon.dumpStacks(stacks);
          fail(`${err.message} (the daemon's thread stacks are in ${stacks})`);
        }
        const code = (err as { code?: string }).code ?? 'none';
        if (!isErrorCode(code)) fail(`${method} failed with an unregistered code ${code}: ${(err as Error).message}`);
        if (!EXPECTED_REFUSALS.has(code)) fail(`${method} ${JSON.stringify(params)} refused with ${code}: ${(err as Error).message}`);
        stats.refusals[code] = (stats.refusals[code] ?? 0) + 1;
        return null;
      } finally {
        clearTimeout(timer);
        stats.calls++;
        stats.slowestCallMs = Math.max(stats.slowestCallMs, Date.now() - started);
      }
    };
    const job = async (c: DaemonClient, method: string, params: Record<string, unknown>): Promise<Job | null> => {
      const j = await call<Job>(c, method, { ...params, wait: true });
      if (j === null) return null;
      stats.jobs++;
      // The guest-like writer resizes images now and then, also under a running snapshot.
      if (j.state === 'failed' && method === 'snapshot.create' && j.error?.code === 'ImageResized') {
        stats.refusals.ImageResized = (stats.refusals.ImageResized ?? 0) + 1;
        return null;
      }
      if (j.state !== 'succeeded') fail(`${method} ${JSON.stringify(params)} job ended ${j.state}: ${j.error?.code} ${j.error?.message}`);
      return j;
    };
    const available = async (c: DaemonClient, disk?: string): Promise<Snapshot[]> =>
      ((await call<Snapshot[]>(c, 'snapshot.list', disk ? { disk } : {})) ?? []).filter((s) => s.status === 'available');

    const until = Date.now() + o.seconds * 1000;
    const everyKindRan = (): boolean => stats.snapshotsCreated > 0 && stats.rollbacks > 0 && stats.clones > 0 && stats.deletes > 0
      && (stats.refusals.DiskBusy ?? 0) > 0;
    const going = (): boolean => failure === null && (Date.now() < until || (!everyKindRan() && Date.now() < until + OVERTIME_MS));
    let serial = 0;
    const worker = async (id: number): Promise<void> => {
      const c = await connect(layout);
      clients.push(c);
      const r = new Random(o.seed + id * 7919);
      while (going()) {
        const disk = r.pick(disks);
        const roll = r.next();
        if (roll < 0.3) {
          images.mutate(join(layout.imageRoot, `${disk}.img`), r);
          if (await job(c, 'snapshot.create', { disk, name: `s${serial++}` })) stats.snapshotsCreated++;
        } else if (roll < 0.5) {
          const snaps = await available(c);
          if (snaps.length > 3 * disks.length || (snaps.length > 0 && r.chance(0.5))) {
            if (await call(c, 'snapshot.delete', { snapshot: r.pick(snaps).id })) stats.deletes++;
          }
        } else if (roll < 0.62) {
          const snaps = await available(c, disk);
          if (snaps.length > 0 && (await job(c, 'rollback', { disk, snapshot: r.pick(snaps).id }))) stats.rollbacks++;
        } else if (roll < 0.74) {
          const snaps = await available(c);
          if (snaps.length > 0) {
            const path = join(layout.imageRoot, `clone-${id}-${serial++}.img`);
            if (await job(c, 'clone', { snapshot: r.pick(snaps).id, path })) stats.clones++;
            if (existsSync(path)) rmSync(path);
          }
        } else if (roll < 0.76) {
          await job(c, r.chance(0.5) ? 'store.gc' : 'store.verify', {});
        } else {
          const method = r.pick(['disk.list', 'snapshot.list', 'chain.list', 'store.stats', 'job.list']);
          await call(c, method, {});
        }
      }
    };
    const sampler = (async () => {
      let last = 0;
      while (going()) {
        const rss = daemon.rssBytes();
        stats.rssMaxBytes = Math.max(stats.rssMaxBytes, rss);
        if (rss > maxRss) fail(`daemon RSS ${rss} exceeds ${maxRss}`);
        if (o.log && Date.now() - last > 10_000) {
          last = Date.now();
          o.log(`${Math.max(0, Math.round((until - Date.now()) / 1000))} s left: ${stats.calls} calls, ${stats.jobs} jobs, rss ${(rss / 1048576).toFixed(0)} MiB`);
        }
        await sleep(500);
      }
    })();
    await Promise.all([...Array.from({ length: o.clients ?? 16 }, (_, i) => worker(i)), sampler]);
    if (failure) throw failure;

    const gc = await job(admin, 'store.gc', {});
    if (!gc) fail('the final gc was refused');
    const verify = await job(admin, 'store.verify', {});
    const problems = (verify!.result as VerifyResult).problems;
    if (problems.length > 0) fail(`store verify found ${JSON.stringify(problems).slice(0, 1000)}`);
    const left = await available(admin);
    for (const s of left) {
      const path = join(layout.imageRoot, `final-${s.id}.img`);
      if (!(await job(admin, 'clone', { snapshot: s.id, path }))) fail(`the final clone of ${s.id} was refused`);
      rmSync(path);
    }
    stats.finalSnapshots = left.length;
    stats.rssMaxBytes = Math.max(stats.rssMaxBytes, daemon.rssBytes());
    for (const c of clients) c.close();
    const code = await daemon.stop();
    if (code !== 0) fail(`the daemon exited ${code} on SIGTERM`);
    return stats;
  } finally {
    for (const c of clients) c.close();
    await daemon.kill();
  }
}
