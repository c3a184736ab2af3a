/**
 * Crash rounds against the real daemon: change disks, start snapshots, rollbacks, deletes, clones
 * and gc, SIGKILL the daemon at a random moment (sometimes again while it recovers at start-up),
 * restart it and check every crash invariant of docs/design.md against a model the test keeps
 * itself:
 *
 *  - no snapshot is left `creating`, no job `running`;
 *  - every snapshot the model saw `available` is still there (unless a delete of it was in
 *    flight), and every `available` snapshot clones bit-exactly to the SHA-256 the test took of
 *    the image when it started that snapshot;
 *  - an image is only ever changed by a rollback: after a crash it holds either its old content
 *    or (rollback finished) the target's; an interrupted rollback is reported on the disk and a
 *    rerun completes it bit-exactly;
 *  - after `store gc`: `store stats` is exactly the distinct non-zero blocks of the surviving
 *    snapshots' content (computed by the test from the clones), the blocks directory holds exactly
 *    that many files and no temp file, and `store verify` is clean.
 *
 * A broken invariant throws a CrashInvariantError naming the round and the seed to replay.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonClient } from '../../src/daemon/client';
import type { Disk, Job, Snapshot, StoreStats, VerifyResult } from '../../src/engine/types';
import { Random } from '../helpers/random';
import { DaemonProcess, connect, killDuringStartup, makeLayout, runRounds, sleep, type Layout } from './daemon-process';
import { ImageWriter } from './disk-image';

export interface TortureOptions {
  rounds: number;
  /** An empty directory the run may fill; the caller removes it. */
  dir: string;
  seed: number;
  blockSize?: number;
  /** Progress lines (one per round). */
  log?: (line: string) => void;
}

export interface TortureStats {
  seed: number;
  rounds: number;
  kills: number;
  /** Kills that landed after the daemon logged "starting" and before it listened (engine open, recovery). */
  startupKills: number;
  /** Kills while at least one job of the round had not reported its end. */
  killsMidJob: number;
  snapshotsAvailable: number;
  snapshotsInterrupted: number;
  rollbacksResumed: number;
  deletes: number;
  gcRuns: number;
  clonesChecked: number;
  blocksVerified: number;
  /** Snapshots the model held available that vanished or changed: must stay 0. */
  lost: number;
}

export class CrashInvariantError extends Error {}

type SnapState = 'pending' | 'available' | 'error' | 'gone';

interface SnapModel {
  name: string;
  disk: string;
  /** SHA-256 of the image when the snapshot was started. */
  sha: string;
  state: SnapState;
  /** A delete was sent and its answer never came: the snapshot may or may not exist. */
  deleting: boolean;
}

interface DiskModel {
  name: string;
  path: string;
  /** SHA-256 the image must hold: only a rollback changes it besides the test. */
  sha: string;
}

interface RollbackIntent {
  disk: string;
  target: SnapModel;
  before: string;
  /** The disk's head before the rollback started: if it already was the target, a head equal to the target proves nothing. */
  headBefore: string | null;
}

const DISKS = ['a', 'b', 'c'];
const MAX_SNAPSHOTS_PER_DISK = 5;

export async function runTorture(o: TortureOptions): Promise<TortureStats> {
  const t = new Torture(o);
  return runRounds(t, o.rounds);
}

class Torture {
  readonly stats: TortureStats;
  daemon: DaemonProcess | undefined;
  private readonly rng: Random;
  private readonly layout: Layout;
  private readonly images: ImageWriter;
  private readonly disks = new Map<string, DiskModel>();
  private readonly snaps = new Map<string, SnapModel>();
  private roundNo = 0;
  /** Moving average of how long a round's jobs took to end, to aim the kills. */
  private jobMs = 60;
  /** Disks a delete was sent for this round, and what the round did (for the failure message). */
  private deletedThisRound = new Set<string>();
  private ops: string[] = [];
  /** Each disk's head snapshot id when the round started. */
  private heads = new Map<string, string | null>();

  constructor(private readonly o: TortureOptions) {
    this.rng = new Random(o.seed);
    this.layout = makeLayout(o.dir, { blockSize: o.blockSize ?? 64 * 1024 });
    this.images = new ImageWriter(o.blockSize ?? 64 * 1024);
    this.stats = {
      seed: o.seed, rounds: 0, kills: 0, startupKills: 0, killsMidJob: 0, snapshotsAvailable: 0, snapshotsInterrupted: 0,
      rollbacksResumed: 0, deletes: 0, gcRuns: 0, clonesChecked: 0, blocksVerified: 0, lost: 0,
    };
  }

  async setUp(): Promise<void> {
    mkdirSync(join(this.layout.imageRoot, 'clones'));
    this.daemon = await DaemonProcess.start(this.layout);
    const c = await connect(this.layout);
    try {
      for (const name of DISKS) {
        const path = join(this.layout.imageRoot, `${name}.img`);
        this.images.create(path, 32, this.rng);
        await c.call('disk.add', { path, name });
        this.disks.set(name, { name, path, sha: ImageWriter.contentSha(path) });
      }
    } finally {
      c.close();
    }
  }

  async tearDown(): Promise<void> {
    const code = await this.daemon!.stop();
    if (code !== 0) this.fail(`the daemon exited ${code} on SIGTERM:\n${this.daemon!.stderr().slice(-3000)}`);
    this.daemon = undefined;
  }

  async round(r: number): Promise<void> {
    this.roundNo = r;
    const c = await connect(this.layout);
    const rollbacks: RollbackIntent[] = [];
    let open = 0;
    const launched = Date.now();
    const track = (p: Promise<unknown>): void => {
      open++;
      const done = (): void => {
        open--;
        if (this.daemon!.alive) this.jobMs = 0.8 * this.jobMs + 0.2 * (Date.now() - launched);
      };
      void p.then(done, done);
    };
    this.deletedThisRound = new Set();
    this.ops = [];
    try {
      this.heads = new Map((await c.call<Disk[]>('disk.list')).map((d) => [d.name, d.headSnapshotId]));
      const busy = new Set<string>();
      const jobs: Array<Promise<unknown>> = [];
      for (let n = this.rng.int(1, 3); n > 0; n--) {
        const op = this.pickOp(busy);
        if (op === null) break;
        const p = this.launch(c, op, busy, rollbacks);
        track(p);
        jobs.push(p);
      }
      if (this.rng.chance(0.15)) await Promise.allSettled(jobs); // sometimes the kill finds the daemon idle
      // Aim inside the jobs: a delay drawn from how long this round's kind of work has taken.
      await sleep(this.rng.chance(0.5) ? this.rng.int(0, Math.ceil(1.3 * this.jobMs)) : this.rng.int(0, 300));
      if (open > 0) this.stats.killsMidJob++;
      await this.daemon!.kill();
      this.stats.kills++;
    } finally {
      c.close();
    }

    if (this.rng.chance(0.35)) await this.killDuringStartup();
    this.daemon = await DaemonProcess.start(this.layout);
    await this.check(rollbacks);
    this.stats.rounds++;
    this.o.log?.(`round ${r}: ${this.summary()}`);
  }

  // ------------------------------------------------------------------ the operations

  private pickOp(busy: Set<string>): { kind: 'snapshot' | 'rollback' | 'delete' | 'gc' | 'clone'; disk?: string; snap?: SnapModel } | null {
    const free = DISKS.filter((d) => !busy.has(d));
    const live = [...this.snaps.values()].filter((s) => s.state === 'available' && !s.deleting);
    const roll = this.rng.next();
    const crowded = free.find((d) => live.filter((s) => s.disk === d).length >= MAX_SNAPSHOTS_PER_DISK);
    const errored = [...this.snaps.values()].filter((s) => s.state === 'error' && !s.deleting);
    if (crowded || (errored.length > 0 && roll < 0.1) || (roll >= 0.45 && roll < 0.6)) {
      const pool = crowded ? live.filter((s) => s.disk === crowded) : errored.length > 0 && roll < 0.1 ? errored : live;
      if (pool.length > 0) return { kind: 'delete', snap: this.rng.pick(pool) };
    }
    if (free.length === 0) return roll < 0.5 ? { kind: 'gc' } : null;
    const disk = this.rng.pick(free);
    const mine = live.filter((s) => s.disk === disk);
    if (roll < 0.45 || mine.length === 0) return { kind: 'snapshot', disk };
    if (roll < 0.75) return { kind: 'rollback', disk, snap: this.rng.pick(mine) };
    if (roll < 0.88) return { kind: 'gc' };
    return { kind: 'clone', snap: this.rng.pick(live) };
  }

  private launch(c: DaemonClient, op: NonNullable<ReturnType<Torture['pickOp']>>, busy: Set<string>, rollbacks: RollbackIntent[]): Promise<unknown> {
    const ignore = (): void => undefined;
    switch (op.kind) {
      case 'snapshot': {
        const disk = this.disks.get(op.disk!)!;
        busy.add(disk.name);
        this.images.mutate(disk.path, this.rng);
        disk.sha = ImageWriter.contentSha(disk.path);
        const name = `r${this.roundNo}-${disk.name}`;
        this.ops.push(`snapshot ${name}`);
        this.snaps.set(name, { name, disk: disk.name, sha: disk.sha, state: 'pending', deleting: false });
        return this.untilEnd(c, c.call<Job>('snapshot.create', { disk: disk.name, name, wait: false })).catch(ignore);
      }
      case 'rollback': {
        const disk = this.disks.get(op.disk!)!;
        busy.add(disk.name);
        this.ops.push(`rollback ${disk.name} to ${op.snap!.name}`);
        rollbacks.push({ disk: disk.name, target: op.snap!, before: disk.sha, headBefore: this.heads.get(disk.name) ?? null });
        return this.untilEnd(c, c.call<Job>('rollback', { disk: disk.name, snapshot: op.snap!.name, wait: false })).catch(ignore);
      }
      case 'delete': {
        const s = op.snap!;
        s.deleting = true;
        this.deletedThisRound.add(s.disk);
        this.ops.push(`delete ${s.name}`);
        this.stats.deletes++;
        return c.call('snapshot.delete', { snapshot: s.name }).then(
          () => { s.deleting = false; s.state = 'gone'; },
          (err: { code?: string }) => { if (err.code !== 'DaemonUnavailable') s.deleting = false; },
        );
      }
      case 'gc':
        this.ops.push('gc');
        this.stats.gcRuns++;
        return this.untilEnd(c, c.call<Job>('store.gc', { wait: false })).catch(ignore);
      case 'clone': {
        this.ops.push(`clone ${op.snap!.name}`);
        const path = join(this.layout.imageRoot, 'clones', `killed-${this.roundNo}-${this.rng.int(0, 1e9)}.img`);
        return this.untilEnd(c, c.call<Job>('clone', { snapshot: op.snap!.name, path, wait: false })).catch(ignore);
      }
    }
  }

  /** Resolves when a started job ended (or the daemon died): the kill is "mid-job" until then. */
  private async untilEnd(c: DaemonClient, started: Promise<Job>): Promise<Job> {
    const job = await started;
    return c.call<Job>('job.wait', { job: job.id });
  }

  private async killDuringStartup(): Promise<void> {
    const { listening } = await killDuringStartup(this.layout, this.rng.int(0, 60));
    this.stats.kills++;
    if (!listening) this.stats.startupKills++;
  }


  // ------------------------------------------------------------------ the checks

  private async check(rollbacks: RollbackIntent[]): Promise<void> {
    const c = await connect(this.layout);
    try {
      const jobs = await c.call<Job[]>('job.list');
      const running = jobs.filter((j) => j.state === 'running');
      if (running.length > 0) this.fail(`jobs still running after a restart: ${running.map((j) => `${j.kind} ${j.id}`).join(', ')}`);

      await this.checkSnapshots(c);
      await this.checkDisks(c, rollbacks);
      const expected = await this.checkClones(c);
      await this.checkStore(c, expected);
    } finally {
      c.close();
    }
  }

  private async checkSnapshots(c: DaemonClient): Promise<void> {
    const listed = new Map((await c.call<Snapshot[]>('snapshot.list')).map((s) => [s.name, s]));
    for (const s of listed.values()) {
      if (s.status === 'creating') this.fail(`snapshot ${s.name} (${s.id}) is still creating after a restart`);
      const m = this.snaps.get(s.name);
      if (!m) this.fail(`snapshot ${s.name} (${s.id}) is unknown to the test`);
      if (m.state === 'gone') this.fail(`deleted snapshot ${s.name} is back`);
      if (m.state === 'available' && s.status !== 'available') this.lose(`snapshot ${s.name} was available and is now ${s.status}`);
      if (m.state === 'error' && s.status !== 'error') this.fail(`snapshot ${s.name} went from error to ${s.status}`);
      if (m.state === 'pending') {
        if (s.status === 'available') this.stats.snapshotsAvailable++;
        else this.stats.snapshotsInterrupted++;
        m.state = s.status === 'available' ? 'available' : 'error';
      }
      m.deleting = false;
    }
    for (const m of this.snaps.values()) {
      if (listed.has(m.name) || m.state === 'gone') continue;
      if (m.deleting) {
        m.state = 'gone';
        m.deleting = false;
      } else if (m.state === 'pending') {
        // Killed before the snapshot record was committed: nothing to see, nothing held.
        m.state = 'gone';
        this.stats.snapshotsInterrupted++;
      } else {
        this.lose(`snapshot ${m.name} (${m.state}) vanished`);
      }
    }
  }

  private async checkDisks(c: DaemonClient, rollbacks: RollbackIntent[]): Promise<void> {
    const snapshots = await c.call<Snapshot[]>('snapshot.list');
    const idOf = (name: string): string | undefined => snapshots.find((s) => s.name === name)?.id;
    for (const disk of await c.call<Disk[]>('disk.list')) {
      const model = this.disks.get(disk.name)!;
      const intent = rollbacks.find((r) => r.disk === disk.name);
      const sha = ImageWriter.contentSha(model.path);
      if (disk.pendingRollback) {
        if (!intent || disk.pendingRollback.snapshotId !== idOf(intent.target.name)) {
          this.fail(`disk ${disk.name} reports a rollback to ${disk.pendingRollback.snapshotId} that the test never started this round`);
        }
        const refused = await c.call('snapshot.create', { disk: disk.name, wait: false }).then(() => null, (e: { code: string }) => e.code);
        if (refused !== 'RollbackIncomplete') this.fail(`a snapshot of disk ${disk.name} with an interrupted rollback was not refused (${String(refused)})`);
        const job = await c.call<Job>('rollback', { disk: disk.name, snapshot: intent.target.name, wait: true });
        if (job.state !== 'succeeded') this.fail(`rerunning the interrupted rollback of ${disk.name} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
        const after = ImageWriter.contentSha(model.path);
        if (after !== intent.target.sha) this.lose(`disk ${disk.name} after the rerun rollback does not hold ${intent.target.name}'s content`);
        model.sha = after;
        this.stats.rollbacksResumed++;
      } else if (intent) {
        const targetId = idOf(intent.target.name);
        // Deleting the head snapshot also moves the head (to its parent), without touching the image.
        const headDeleted = this.deletedThisRound.has(disk.name);
        const moved = disk.headSnapshotId === targetId && intent.headBefore !== targetId && !headDeleted;
        if (moved && sha !== intent.target.sha) this.lose(`disk ${disk.name} rolled back to ${intent.target.name} but does not hold its content`);
        if (sha !== intent.before && sha !== intent.target.sha) this.fail(`disk ${disk.name} was changed by a rollback that left no journal`);
        if (sha === intent.target.sha && sha !== intent.before && disk.headSnapshotId !== targetId) {
          this.fail(`disk ${disk.name} holds ${intent.target.name}'s content but its head did not move there`);
        }
        model.sha = sha;
      } else if (sha !== model.sha) {
        this.fail(`disk ${disk.name} changed although no rollback of it ran`);
      }
    }
  }

  /** Clones every available snapshot, compares it with the model, and collects the blocks they hold. */
  private async checkClones(c: DaemonClient): Promise<Map<string, number>> {
    const dir = join(this.layout.imageRoot, 'clones');
    for (const f of readdirSync(dir)) unlinkSync(join(dir, f)); // partial files of killed clones
    const expected = new Map<string, number>();
    for (const m of this.snaps.values()) {
      if (m.state !== 'available') continue;
      const path = join(dir, `check-${m.name}.img`);
      const job = await c.call<Job>('clone', { snapshot: m.name, path, wait: true });
      if (job.state !== 'succeeded') this.lose(`clone of ${m.name} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
      if (ImageWriter.contentSha(path) !== m.sha) this.lose(`clone of ${m.name} differs from the content it was taken of`);
      this.images.blockDigests(path, expected);
      unlinkSync(path);
      this.stats.clonesChecked++;
    }
    return expected;
  }

  private async checkStore(c: DaemonClient, expected: Map<string, number>): Promise<void> {
    const gc = await c.call<Job>('store.gc', { wait: true });
    if (gc.state !== 'succeeded') this.fail(`store gc ended ${gc.state}: ${gc.error?.code} ${gc.error?.message}`);
    const stats = await c.call<StoreStats>('store.stats');
    const bytes = [...expected.values()].reduce((a, b) => a + b, 0);
    if (stats.blocks !== expected.size || stats.bytes !== bytes || stats.pendingFreeBlocks !== 0) {
      this.fail(`store stats ${JSON.stringify(stats)} after gc, expected ${expected.size} blocks, ${bytes} bytes, none pending`);
    }
    const files = this.blockFiles();
    const missing = [...expected.keys()].filter((d) => !files.has(d));
    const extra = [...files].filter((d) => !expected.has(d));
    if (missing.length > 0) this.lose(`block files missing from the store: ${missing.join(', ')}`);
    if (extra.length > 0) this.fail(`block files no snapshot references survived gc: ${extra.join(', ')}`);
    const tmp = join(this.layout.dataDir, 'blocks', 'tmp');
    if (existsSync(tmp) && readdirSync(tmp).length > 0) this.fail(`temp files survived gc: ${readdirSync(tmp).join(', ')}`);
    const verify = await c.call<Job>('store.verify', { wait: true });
    const result = verify.result as VerifyResult | null;
    if (verify.state !== 'succeeded' || !result || result.problems.length > 0 || result.checkedBlocks !== expected.size) {
      this.fail(`store verify: ${verify.state} ${JSON.stringify(verify.result ?? verify.error)}`);
    }
    this.stats.blocksVerified += result!.checkedBlocks;
  }

  private blockFiles(): Set<string> {
    const root = join(this.layout.dataDir, 'blocks');
    const out = new Set<string>();
    if (!existsSync(root)) return out;
    for (const fan of readdirSync(root)) {
      if (!/^[0-9a-f]{3}$/.test(fan)) continue;
      for (const f of readdirSync(join(root, fan))) out.add(f);
    }
    return out;
  }

  private summary(): string {
    const s = this.stats;
    const live = [...this.snaps.values()].filter((m) => m.state === 'available').length;
    return `kills ${s.kills} (start-up ${s.startupKills}, mid-job ${s.killsMidJob}), live snapshots ${live}, ` +
      `made ${s.snapshotsAvailable}, interrupted ${s.snapshotsInterrupted}, rollbacks resumed ${s.rollbacksResumed}, clones checked ${s.clonesChecked}`;
  }

  private lose(message: string): never {
    this.stats.lost++;
    this.fail(`DATA LOST: ${message}`);
  }

  private fail(message: string): never {
    throw new CrashInvariantError(`round ${this.roundNo} (seed ${this.o.seed}; ops: ${this.ops.join(', ')}): ${message}\n--- daemon log tail ---\n${this.daemon?.stderr().slice(-3000) ?? ''}`);
  }
}

/** Removes a torture directory (images, data dir); safe to call on a partial one. */
export function removeTortureDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
