/**
 * Crash rounds against the real daemon: change disks (two raw, one qcow2), start snapshots,
 * rollbacks, deletes, clones (raw and qcow2), gc and verify, group snapshots and their deletion,
 * a policy run with retention, stream exports and imports, and a copy-on-write disk's creation,
 * flatten and removal; SIGKILL the daemon at a random moment (sometimes 0–50 ms after a job was
 * accepted, sometimes again while it recovers at start-up), restart it and check every crash
 * invariant of docs/design.md against a model the test keeps itself:
 *
 *  - no snapshot is left `creating`, no job `running`, no group `creating`;
 *  - every snapshot the model saw `available` is still there (unless a delete of it, of its group,
 *    or a retention run that may expire it was in flight), and every `available` snapshot clones
 *    bit-exactly to the SHA-256 the test took of the image when it started that snapshot (a
 *    snapshot a group, a policy run or an import made while killed is adopted with the content
 *    its disk, or the exported snapshot, had);
 *  - an image is only ever changed by a rollback: after a crash it holds either its old content
 *    or (rollback finished) the target's; an interrupted raw rollback is reported on the disk and a
 *    rerun completes it bit-exactly; a qcow2 rollback replaces the file whole, and is reported
 *    only when killed between its rename and its commit, the file then already the target's;
 *  - a clone, flatten or export cut off leaves no file, or a complete one under its final name (a
 *    stream file is read whole and its content compared, stream-content.ts), and nothing else is
 *    left in the image root;
 *  - the copy-on-write disk is there or not, as its create or remove got, and flattens to its base;
 *  - after `store gc`: `store stats` is exactly the distinct non-zero blocks of the surviving
 *    snapshots' content (computed by the test from the clones), the blocks directory holds exactly
 *    those files, every granule file belongs to one of them, no temp file is left, and `store
 *    verify` is clean;
 *  - at the end, deleting everything and a gc leave the store empty (store-empty.ts).
 *
 * A broken invariant throws a CrashInvariantError naming the round and the seed to replay.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonClient } from '../../src/daemon/client';
import type { Group } from '../../src/engine/groups';
import type { Disk, Job, Snapshot, StoreStats, VerifyResult } from '../../src/engine/types';
import { Random } from '../helpers/random';
import { DaemonProcess, connect, killDuringStartup, makeLayout, runRounds, sleep, type Layout } from './daemon-process';
import { ImageWriter } from './disk-image';
import { contentSha, createQcow2, mutateQcow2, type ImageFormat } from './qcow2-image';
import { leftAfterDeletingAll } from './store-empty';
import { storeFiles } from './store-files';
import { streamContentSha } from './stream-content';

export interface TortureOptions {
  rounds: number;
  /** An empty directory the run may fill; the caller removes it. */
  dir: string;
  seed: number;
  blockSize?: number;
  /** Progress lines (one per round). */
  log?: (line: string) => void;
}

export type OpKind = 'snapshot' | 'rollback' | 'delete' | 'gc' | 'clone' | 'group' | 'group-delete' | 'policy' | 'export' | 'import'
  | 'verify' | 'cow' | 'flatten' | 'remove';

export interface TortureStats {
  seed: number;
  blockSize: number;
  rounds: number;
  kills: number;
  /** Kills that landed after the daemon logged "starting" and before it listened (engine open, recovery). */
  startupKills: number;
  /** Kills while at least one job of the round had not reported its end. */
  killsMidJob: number;
  /** Kills 0–50 ms after the daemon accepted a job. */
  killsAfterAccept: number;
  /** Per kind of operation: how many were started, and how many had not ended when the daemon was killed. */
  started: Partial<Record<OpKind, number>>;
  killedDuring: Partial<Record<OpKind, number>>;
  snapshotsAvailable: number;
  snapshotsInterrupted: number;
  /** Snapshots made by a group, a policy run or an import, found after a kill and checked like the others. */
  snapshotsAdopted: number;
  rollbacksResumed: number;
  deletes: number;
  gcRuns: number;
  clonesChecked: number;
  /** Files of killed clones, flattens and exports found complete under their final names. */
  killedOutputsComplete: number;
  blocksVerified: number;
  /** Most granule files seen after a gc (none at a 64 KiB block size). */
  granuleFilesMax: number;
  /** Snapshots the model held available that vanished or changed: must stay 0. */
  lost: number;
}

export class CrashInvariantError extends Error {}

type SnapState = 'pending' | 'available' | 'error' | 'gone';

interface SnapModel {
  /** The name the test gave it, or the daemon's id for a snapshot the test adopted. */
  key: string;
  /** Known once the snapshot was listed. */
  id: string | null;
  disk: string;
  /** SHA-256 of the image when the snapshot was started. */
  sha: string;
  state: SnapState;
  /** A delete was sent and its answer never came: the snapshot may or may not exist. */
  deleting: boolean;
  /** Made by a policy run: a later run's retention may expire it. */
  auto: boolean;
  /** The group it is a member of: deleted with the group only. */
  group: string | null;
}

interface DiskModel {
  name: string;
  path: string;
  format: ImageFormat;
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

/** A snapshot the daemon may have made this round without the test knowing its name. */
type Adoptable =
  | { via: 'group' | 'policy'; disk: string; sha: string }
  | { via: 'import'; id: string; disk: string; sha: string };

/** A file a clone, flatten or export may leave: absent, or complete with this content. */
interface Output { sha: string; format: ImageFormat; what: string }

interface CowModel {
  base: SnapModel;
  state: 'present' | 'creating' | 'removing';
}

interface Op {
  kind: OpKind;
  disk?: string;
  snap?: SnapModel;
  group?: string;
  stream?: string;
}

interface Launched {
  kind: OpKind;
  /** Settles once the daemon answered the request (for a job: accepted it). */
  accepted: Promise<unknown>;
  ended: boolean;
}

const DISKS: Array<{ name: string; format: ImageFormat }> = [{ name: 'a', format: 'raw' }, { name: 'b', format: 'raw' }, { name: 'q', format: 'qcow2' }];
const COW = 'w';
const GROUP_DISKS = ['a', 'b'];
const POLICY = 'pol';
const POLICY_DISKS = ['a', 'q'];
const MAX_SNAPSHOTS_PER_DISK = 5;
const OUTPUT_DIRS = ['clones', 'flat', 'streams'];

export async function runTorture(o: TortureOptions): Promise<TortureStats> {
  const t = new Torture(o);
  return runRounds(t, o.rounds);
}

class Torture {
  readonly stats: TortureStats;
  daemon: DaemonProcess | undefined;
  private readonly rng: Random;
  private readonly layout: Layout;
  private readonly blockSize: number;
  /** Blocks per image: a 4 MiB store gets fewer, so that a round still takes seconds. */
  private readonly imageBlocks: number;
  private readonly images: ImageWriter;
  private readonly disks = new Map<string, DiskModel>();
  private readonly snaps = new Map<string, SnapModel>();
  private readonly outputs = new Map<string, Output>();
  /** Export files that may exist, and the snapshot each holds. */
  private readonly exports = new Map<string, SnapModel>();
  /** Groups the daemon listed (available or error), by name, and those a delete was sent for. */
  private groups = new Set<string>();
  private readonly groupsDeleting = new Set<string>();
  private cow: CowModel | null = null;
  private adoptable: Adoptable[] = [];
  private policyRan = false;
  private failedImports: string[] = [];
  /** Stream files found whole and holding their snapshot's content. */
  private readonly streamsRead = new Set<string>();
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
    this.blockSize = o.blockSize ?? 64 * 1024;
    this.imageBlocks = this.blockSize >= 1024 * 1024 ? 8 : 32;
    this.layout = makeLayout(o.dir, { blockSize: this.blockSize });
    this.images = new ImageWriter(this.blockSize, this.imageBlocks);
    this.stats = {
      seed: o.seed, blockSize: this.blockSize, rounds: 0, kills: 0, startupKills: 0, killsMidJob: 0, killsAfterAccept: 0, started: {}, killedDuring: {},
      snapshotsAvailable: 0, snapshotsInterrupted: 0, snapshotsAdopted: 0, rollbacksResumed: 0, deletes: 0, gcRuns: 0, clonesChecked: 0,
      killedOutputsComplete: 0, blocksVerified: 0, granuleFilesMax: 0, lost: 0,
    };
  }

  async setUp(): Promise<void> {
    for (const d of OUTPUT_DIRS) mkdirSync(join(this.layout.imageRoot, d));
    this.daemon = await DaemonProcess.start(this.layout);
    const c = await connect(this.layout);
    try {
      for (const { name, format } of DISKS) {
        const path = join(this.layout.imageRoot, format === 'raw' ? `${name}.img` : `${name}.qcow2`);
        if (format === 'raw') this.images.create(path, this.imageBlocks, this.rng);
        else createQcow2(path, this.imageBlocks * this.blockSize, this.blockSize, this.rng);
        await c.call('disk.add', { path, name, format });
        this.disks.set(name, { name, path, format, sha: contentSha(path, format) });
      }
      // Never due on its own (disabled): only the rounds' runs take its snapshots and expire them.
      await c.call('policy.create', { name: POLICY, hours: [0], enabled: false, keepLast: 2 });
      await c.call('policy.bind', { policy: POLICY, disks: POLICY_DISKS });
    } finally {
      c.close();
    }
  }

  async tearDown(): Promise<void> {
    const c = await connect(this.layout);
    try {
      const left = await leftAfterDeletingAll(c, this.layout.dataDir);
      if (left.length > 0) this.fail(`deleting everything and a gc left the store not empty: ${left.join('; ')}`);
    } finally {
      c.close();
    }
    const code = await this.daemon!.stop();
    if (code !== 0) this.fail(`the daemon exited ${code} on SIGTERM:\n${this.daemon!.stderr().slice(-3000)}`);
    this.daemon = undefined;
  }

  async round(r: number): Promise<void> {
    this.roundNo = r;
    const c = await connect(this.layout);
    const rollbacks: RollbackIntent[] = [];
    const launched: Launched[] = [];
    const started = Date.now();
    this.deletedThisRound = new Set();
    this.ops = [];
    this.adoptable = [];
    this.policyRan = false;
    try {
      this.heads = new Map((await c.call<Disk[]>('disk.list')).map((d) => [d.name, d.headSnapshotId]));
      const busy = new Set<string>();
      const jobs: Array<Promise<unknown>> = [];
      // Now and then one job alone, killed 0–50 ms after the daemon accepted it: the moment its
      // record exists and its work has barely begun.
      const justAccepted = this.rng.chance(0.2);
      for (let n = justAccepted ? 1 : this.rng.int(1, 3); n > 0; n--) {
        const op = this.pickOp(busy);
        if (op === null) break;
        const l: Launched = { kind: op.kind, accepted: Promise.resolve(), ended: false };
        const p = this.launch(c, op, busy, rollbacks, l);
        const done = (): void => {
          l.ended = true;
          if (this.daemon!.alive) this.jobMs = 0.8 * this.jobMs + 0.2 * (Date.now() - started);
        };
        void p.then(done, done);
        launched.push(l);
        jobs.push(p);
        this.stats.started[op.kind] = (this.stats.started[op.kind] ?? 0) + 1;
      }
      if (justAccepted && launched.length > 0) {
        await launched[0]!.accepted.catch(() => undefined);
        await sleep(this.rng.int(0, 50));
        this.stats.killsAfterAccept++;
      } else {
        if (this.rng.chance(0.15)) await Promise.allSettled(jobs); // sometimes the kill finds the daemon idle
        // Aim inside the jobs: a delay drawn from how long this round's kind of work has taken.
        await sleep(this.rng.chance(0.5) ? this.rng.int(0, Math.ceil(1.3 * this.jobMs)) : this.rng.int(0, 300));
      }
      const open = launched.filter((l) => !l.ended);
      if (open.length > 0) this.stats.killsMidJob++;
      for (const l of open) this.stats.killedDuring[l.kind] = (this.stats.killedDuring[l.kind] ?? 0) + 1;
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

  private live(): SnapModel[] {
    return [...this.snaps.values()].filter((s) => s.state === 'available' && !s.deleting);
  }

  private pickOp(busy: Set<string>): Op | null {
    const free = DISKS.map((d) => d.name).filter((d) => !busy.has(d));
    const live = this.live();
    const deletable = live.filter((s) => s.group === null);
    const roll = this.rng.next();
    const crowded = free.find((d) => deletable.filter((s) => s.disk === d).length >= MAX_SNAPSHOTS_PER_DISK);
    const errored = [...this.snaps.values()].filter((s) => s.state === 'error' && !s.deleting && s.group === null);
    if (!crowded && this.rng.chance(0.5)) {
      const more = this.moreOps(busy, free, live);
      if (more.length > 0) return this.rng.pick(more);
    }
    if (crowded || (errored.length > 0 && roll < 0.1) || (roll >= 0.45 && roll < 0.6)) {
      const pool = crowded ? deletable.filter((s) => s.disk === crowded) : errored.length > 0 && roll < 0.1 ? errored : deletable;
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

  /** The operations beyond a single disk's snapshot, rollback, delete and clone that may start now. */
  private moreOps(busy: Set<string>, free: string[], live: SnapModel[]): Op[] {
    const ops: Op[] = [{ kind: 'verify' }];
    if (GROUP_DISKS.every((d) => free.includes(d))) ops.push({ kind: 'group' });
    const groups = [...this.groups].filter((g) => !this.groupsDeleting.has(g));
    if (groups.length > 0) ops.push({ kind: 'group-delete', group: this.rng.pick(groups) });
    if (POLICY_DISKS.every((d) => free.includes(d))) ops.push({ kind: 'policy' });
    const exportable = live.filter((s) => s.id !== null && s.group === null && !s.auto);
    if (exportable.length > 0) ops.push({ kind: 'export', snap: this.rng.pick(exportable) });
    // An import is of a snapshot no longer here: exported snapshots are the ones worth deleting.
    const exported = [...this.exports.values()].filter((s) => live.includes(s) && free.includes(s.disk));
    if (exported.length > 0) ops.push({ kind: 'delete', snap: this.rng.pick(exported) });
    const importable = [...this.exports].filter(([path, s]) => s.state === 'gone' && free.includes(s.disk) && existsSync(path)
      && ![...this.snaps.values()].some((m) => m.id === s.id && m.state !== 'gone'));
    if (importable.length > 0) {
      const [stream, s] = this.rng.pick(importable);
      // Weighed up: an import needs an export and a delete of its snapshot first.
      const op: Op = { kind: 'import', stream, disk: s.disk, snap: s };
      ops.push(op, op, op);
    }
    if (this.cow === null && live.length > 0) ops.push({ kind: 'cow', snap: this.rng.pick(live) });
    if (this.cow?.state === 'present' && !busy.has(COW)) ops.push({ kind: 'flatten' }, { kind: 'remove' });
    return ops;
  }

  private launch(c: DaemonClient, op: Op, busy: Set<string>, rollbacks: RollbackIntent[], l: Launched): Promise<unknown> {
    const ignore = (): void => undefined;
    /** A job: accepted when its record comes back, ended when job.wait answers. */
    const job = (method: string, params: Record<string, unknown>): Promise<Job> => {
      const accepted = c.call<Job>(method, { ...params, wait: false });
      l.accepted = accepted;
      return accepted.then((j) => c.call<Job>('job.wait', { job: j.id }));
    };
    const call = <T>(method: string, params: Record<string, unknown>): Promise<T> => {
      const p = c.call<T>(method, params);
      l.accepted = p;
      return p;
    };
    const ref = (s: SnapModel): string => s.id ?? s.key;
    switch (op.kind) {
      case 'snapshot': {
        const disk = this.changeDisk(op.disk!, busy);
        const name = `r${this.roundNo}-${disk.name}`;
        this.ops.push(`snapshot ${name}`);
        this.snaps.set(name, { key: name, id: null, disk: disk.name, sha: disk.sha, state: 'pending', deleting: false, auto: false, group: null });
        return job('snapshot.create', { disk: disk.name, name }).catch(ignore);
      }
      case 'rollback': {
        const disk = this.disks.get(op.disk!)!;
        busy.add(disk.name);
        this.ops.push(`rollback ${disk.name} to ${op.snap!.key}`);
        rollbacks.push({ disk: disk.name, target: op.snap!, before: disk.sha, headBefore: this.heads.get(disk.name) ?? null });
        return job('rollback', { disk: disk.name, snapshot: ref(op.snap!) }).catch(ignore);
      }
      case 'delete': {
        const s = op.snap!;
        s.deleting = true;
        this.deletedThisRound.add(s.disk);
        this.ops.push(`delete ${s.key}`);
        this.stats.deletes++;
        return call('snapshot.delete', { snapshot: ref(s) }).then(
          () => { s.deleting = false; s.state = 'gone'; },
          (err: { code?: string }) => { if (err.code !== 'DaemonUnavailable') s.deleting = false; },
        );
      }
      case 'gc':
        this.ops.push('gc');
        this.stats.gcRuns++;
        return job('store.gc', {}).catch(ignore);
      case 'verify':
        this.ops.push('verify');
        return job('store.verify', {}).catch(ignore);
      case 'clone': {
        const s = op.snap!;
        // A qcow2 image's size is whole sectors; the raw disks' resizes need not be.
        const format: ImageFormat = this.disks.get(s.disk)?.format === 'qcow2' && this.rng.chance(0.5) ? 'qcow2' : 'raw';
        const path = join(this.layout.imageRoot, 'clones', `killed-${this.roundNo}-${this.rng.int(0, 1e9)}.${format}`);
        this.ops.push(`clone ${s.key} to ${format}`);
        this.outputs.set(path, { sha: s.sha, format, what: `clone of ${s.key}` });
        return job('clone', { snapshot: ref(s), path, format }).catch(ignore);
      }
      case 'group': {
        const shas = GROUP_DISKS.map((d) => this.changeDisk(d, busy));
        for (const d of shas) this.adoptable.push({ via: 'group', disk: d.name, sha: d.sha });
        const name = `g${this.roundNo}`;
        this.ops.push(`group ${name}`);
        return call<Group>('group.create', { disks: GROUP_DISKS, name }).then((g) => this.untilGroupSettles(c, g.id)).catch(ignore);
      }
      case 'group-delete': {
        const g = op.group!;
        this.groupsDeleting.add(g);
        const members = [...this.snaps.values()].filter((s) => s.group === g && s.state !== 'gone');
        for (const s of members) s.deleting = true;
        this.ops.push(`group delete ${g}`);
        return call('group.delete', { group: g }).then(
          () => { for (const s of members) { s.deleting = false; s.state = 'gone'; } },
          (err: { code?: string }) => { if (err.code !== 'DaemonUnavailable') for (const s of members) s.deleting = false; },
        );
      }
      case 'policy': {
        for (const d of POLICY_DISKS) this.adoptable.push({ via: 'policy', disk: d, sha: this.changeDisk(d, busy).sha });
        this.policyRan = true;
        this.ops.push('policy run');
        // Answers once every bound disk's snapshot and retention are done.
        return call('policy.run', { policy: POLICY }).catch(ignore);
      }
      case 'export': {
        const s = op.snap!;
        const path = join(this.layout.imageRoot, 'streams', `${s.id!}-${this.roundNo}.bss`);
        this.ops.push(`export ${s.key}`);
        this.exports.set(path, s);
        return job('snapshot.export', { snapshot: s.id!, path }).catch(ignore);
      }
      case 'import': {
        const s = op.snap!;
        busy.add(s.disk);
        this.adoptable.push({ via: 'import', id: s.id!, disk: s.disk, sha: s.sha });
        this.ops.push(`import ${s.key} (${s.id!})`);
        return job('snapshot.import', { path: op.stream!, disk: s.disk }).then((j) => {
          if (j.state === 'failed') this.failedImports.push(`import of ${op.stream!} ended failed: ${j.error?.code} ${j.error?.message}`);
        }, ignore);
      }
      case 'cow': {
        const base = op.snap!;
        this.cow = { base, state: 'creating' };
        busy.add(COW);
        this.ops.push(`clone --cow ${base.key}`);
        return call('clone.cow', { snapshot: ref(base), name: COW }).then(
          () => { this.cow!.state = 'present'; },
          (err: { code?: string }) => { if (err.code !== 'DaemonUnavailable') this.cow = null; },
        );
      }
      case 'flatten': {
        const cow = this.cow!;
        busy.add(COW);
        const format: ImageFormat = cow.base.disk === 'q' && this.rng.chance(0.5) ? 'qcow2' : 'raw';
        const path = join(this.layout.imageRoot, 'flat', `killed-${this.roundNo}-${this.rng.int(0, 1e9)}.${format}`);
        this.ops.push(`flatten ${COW} to ${format}`);
        this.outputs.set(path, { sha: cow.base.sha, format, what: `flatten of ${COW}` });
        return job('disk.flatten', { disk: COW, path, format }).catch(ignore);
      }
      case 'remove': {
        const cow = this.cow!;
        busy.add(COW);
        cow.state = 'removing';
        this.ops.push(`disk remove ${COW}`);
        return call('disk.remove', { disk: COW }).then(
          () => { this.cow = null; },
          (err: { code?: string }) => { if (err.code !== 'DaemonUnavailable') cow.state = 'present'; },
        );
      }
    }
  }

  /** Writes to a disk as a guest would before a snapshot of it, and takes the content's SHA-256. */
  private changeDisk(name: string, busy: Set<string>): DiskModel {
    const disk = this.disks.get(name)!;
    busy.add(name);
    if (disk.format === 'raw') this.images.mutate(disk.path, this.rng);
    else mutateQcow2(disk.path, this.imageBlocks * this.blockSize, this.blockSize, this.rng);
    disk.sha = contentSha(disk.path, disk.format);
    return disk;
  }

  /** A group create answers at once; its members' jobs end later. */
  private async untilGroupSettles(c: DaemonClient, id: string): Promise<void> {
    for (;;) {
      const g = await c.call<Group>('group.show', { group: id });
      if (g.status !== 'creating') return;
      await sleep(10);
    }
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
      if (this.failedImports.length > 0) this.fail(this.failedImports.join('; '));

      await this.checkSnapshots(c);
      await this.checkDisks(c, rollbacks);
      await this.checkImageRoot();
      await this.checkCow(c);
      const expected = await this.checkClones(c);
      await this.checkStore(c, expected);
    } finally {
      c.close();
    }
  }

  private async checkSnapshots(c: DaemonClient): Promise<void> {
    const listed = await c.call<Snapshot[]>('snapshot.list');
    const diskNames = new Map((await c.call<Disk[]>('disk.list')).map((d) => [d.id, d.name]));
    const groups = await c.call<Group[]>('group.list');
    const creating = groups.filter((g) => g.status === 'creating');
    if (creating.length > 0) this.fail(`groups still creating after a restart: ${creating.map((g) => g.name).join(', ')}`);
    const groupNames = new Map(groups.map((g) => [g.id, g.name]));
    const seen = new Set<SnapModel>();
    for (const s of listed) {
      if (s.status === 'creating') this.fail(`snapshot ${s.name} (${s.id}) is still creating after a restart`);
      const m = this.modelOf(s, diskNames.get(s.diskId) ?? '?', groupNames);
      seen.add(m);
      if (m.state === 'gone') this.fail(`deleted snapshot ${s.name} (${s.id}) is back`);
      if (m.state === 'available' && s.status !== 'available') this.lose(`snapshot ${m.key} was available and is now ${s.status}`);
      if (m.state === 'error' && s.status !== 'error') this.fail(`snapshot ${m.key} went from error to ${s.status}`);
      if (m.state === 'pending') {
        if (s.status === 'available') this.stats.snapshotsAvailable++;
        else this.stats.snapshotsInterrupted++;
        m.state = s.status === 'available' ? 'available' : 'error';
      }
      m.deleting = false;
    }
    for (const m of this.snaps.values()) {
      if (seen.has(m) || m.state === 'gone') continue;
      if (m.deleting || (m.auto && this.policyRan)) {
        m.state = 'gone';
        m.deleting = false;
      } else if (m.state === 'pending') {
        // Killed before the snapshot record was committed: nothing to see, nothing held.
        m.state = 'gone';
        this.stats.snapshotsInterrupted++;
      } else {
        this.lose(`snapshot ${m.key} (${m.id ?? 'never listed'}, ${m.state}) vanished`);
      }
    }
    this.groups = new Set(groups.map((g) => g.name));
    this.groupsDeleting.clear();
    for (const [path, s] of this.exports) {
      if (!existsSync(path)) this.exports.delete(path);
      else if (s.state === 'gone' && [...this.snaps.values()].some((m) => m.id === s.id && m.state === 'available')) {
        unlinkSync(path); // imported again: the file has served
        this.exports.delete(path);
      }
    }
  }

  /** The model of a listed snapshot: known by id, adopted from what this round started, or known by the name the test gave it. */
  private modelOf(s: Snapshot, disk: string, groupNames: Map<string, string>): SnapModel {
    const known = [...this.snaps.values()].find((m) => m.id === s.id && m.state !== 'gone');
    if (known) return known;
    const i = this.adoptable.findIndex((a) => a.disk === disk && (a.via === 'import' ? a.id === s.id
      : a.via === 'group' ? s.groupId !== null : s.type === 'auto' && s.groupId === null));
    if (i >= 0) {
      const a = this.adoptable.splice(i, 1)[0]!;
      const m: SnapModel = {
        key: s.id, id: s.id, disk, sha: a.sha, state: 'pending', deleting: false, auto: s.type === 'auto',
        group: s.groupId === null ? null : groupNames.get(s.groupId) ?? s.groupId,
      };
      this.snaps.set(m.key, m);
      this.stats.snapshotsAdopted++;
      return m;
    }
    const named = this.snaps.get(s.name);
    if (named && (named.id === null || named.id === s.id)) {
      named.id = s.id;
      return named;
    }
    this.fail(`snapshot ${s.name} (${s.id}, ${s.type}, group ${s.groupId}) is unknown to the test`);
  }

  private async checkDisks(c: DaemonClient, rollbacks: RollbackIntent[]): Promise<void> {
    const snapshots = await c.call<Snapshot[]>('snapshot.list');
    const idOf = (m: SnapModel): string | undefined => snapshots.find((s) => s.id === m.id)?.id;
    for (const disk of await c.call<Disk[]>('disk.list')) {
      const model = this.disks.get(disk.name);
      if (!model) continue; // the copy-on-write disk: checkCow
      const intent = rollbacks.find((r) => r.disk === disk.name);
      const sha = contentSha(model.path, model.format);
      if (disk.pendingRollback) {
        // A qcow2 rollback journals until its commit: killed after the rename, the disk file is
        // already the new image, whole, and the rerun below completes the record.
        if (model.format === 'qcow2' && intent && sha !== intent.target.sha) {
          this.lose(`qcow2 disk ${disk.name} reports an interrupted rollback without holding ${intent.target.key}'s content: it must be replaced whole or not at all`);
        }
        if (!intent || disk.pendingRollback.snapshotId !== idOf(intent.target)) {
          this.fail(`disk ${disk.name} reports a rollback to ${disk.pendingRollback.snapshotId} that the test never started this round`);
        }
        const refused = await c.call('snapshot.create', { disk: disk.name, wait: false }).then(() => null, (e: { code: string }) => e.code);
        if (refused !== 'RollbackIncomplete') this.fail(`a snapshot of disk ${disk.name} with an interrupted rollback was not refused (${String(refused)})`);
        const job = await c.call<Job>('rollback', { disk: disk.name, snapshot: intent.target.id!, wait: true });
        if (job.state !== 'succeeded') this.fail(`rerunning the interrupted rollback of ${disk.name} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
        const after = contentSha(model.path, model.format);
        if (after !== intent.target.sha) this.lose(`disk ${disk.name} after the rerun rollback does not hold ${intent.target.key}'s content`);
        model.sha = after;
        this.stats.rollbacksResumed++;
      } else if (intent) {
        const targetId = idOf(intent.target);
        // Deleting the head snapshot also moves the head (to its parent), without touching the image.
        const headDeleted = this.deletedThisRound.has(disk.name);
        const moved = disk.headSnapshotId === targetId && intent.headBefore !== targetId && !headDeleted;
        if (moved && sha !== intent.target.sha) this.lose(`disk ${disk.name} rolled back to ${intent.target.key} but does not hold its content`);
        if (sha !== intent.before && sha !== intent.target.sha) this.fail(`disk ${disk.name} was changed by a rollback that left no journal`);
        if (sha === intent.target.sha && sha !== intent.before && disk.headSnapshotId !== targetId) {
          this.fail(`disk ${disk.name} holds ${intent.target.key}'s content but its head did not move there`);
        }
        model.sha = sha;
      } else if (sha !== model.sha) {
        this.fail(`disk ${disk.name} changed although no rollback of it ran`);
      }
    }
  }

  /**
   * Nothing but the disks and the output directories in the image root (no temp image of a
   * qcow2 rollback, no partial file), and in those only files the rounds asked for, each complete.
   * A stream file is read once, the round it appears: it stays for a later import.
   */
  private async checkImageRoot(): Promise<void> {
    const root = this.layout.imageRoot;
    const expected = new Set([...OUTPUT_DIRS, ...[...this.disks.values()].map((d) => d.path.slice(root.length + 1))]);
    const stray = readdirSync(root).filter((n) => !expected.has(n));
    if (stray.length > 0) this.fail(`left in the image root: ${stray.join(', ')}`);
    for (const dir of ['clones', 'flat']) {
      for (const f of readdirSync(join(root, dir))) {
        const path = join(root, dir, f);
        const o = this.outputs.get(path);
        if (!o) this.fail(`left in ${dir}/: ${f}, which no clone or flatten was asked to write`);
        if (contentSha(path, o.format) !== o.sha) this.lose(`${o.what} was cut off and left an incomplete ${f} under its final name`);
        unlinkSync(path);
        this.stats.killedOutputsComplete++;
      }
    }
    this.outputs.clear();
    for (const f of readdirSync(join(root, 'streams'))) {
      const path = join(root, 'streams', f);
      const s = this.exports.get(path);
      if (!s) this.fail(`left in streams/: ${f}, which no export was asked to write`);
      if (this.streamsRead.has(path)) continue;
      const sha = await streamContentSha(path).catch((err: Error) => this.lose(`export of ${s.key} left ${f} under its final name, not a whole stream: ${err.message}`));
      if (sha !== s.sha) this.lose(`export of ${s.key} left ${f}, whose content is not the snapshot's`);
      this.streamsRead.add(path);
      this.stats.killedOutputsComplete++;
    }
    for (const path of this.streamsRead) if (!this.exports.has(path)) this.streamsRead.delete(path);
  }

  /** The copy-on-write disk is there exactly when its create (or not its remove) got through, and holds its base. */
  private async checkCow(c: DaemonClient): Promise<void> {
    const listed = (await c.call<Disk[]>('disk.list')).find((d) => d.name === COW);
    if (this.cow === null) {
      if (listed) this.fail(`copy-on-write disk ${COW} is there although the test never made it or saw it removed`);
      return;
    }
    if (!listed) {
      if (this.cow.state === 'present') this.lose(`copy-on-write disk ${COW} vanished`);
      this.cow = null;
      return;
    }
    this.cow.state = 'present';
    const path = join(this.layout.imageRoot, 'flat', 'check-w.img');
    const job = await c.call<Job>('disk.flatten', { disk: COW, path, wait: true });
    if (job.state !== 'succeeded') this.lose(`flatten of ${COW} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
    if (ImageWriter.contentSha(path) !== this.cow.base.sha) this.lose(`copy-on-write disk ${COW} does not hold its base ${this.cow.base.key}'s content`);
    unlinkSync(path);
  }

  /** Clones every available snapshot, compares it with the model, and collects the blocks they hold. */
  private async checkClones(c: DaemonClient): Promise<Map<string, number>> {
    const dir = join(this.layout.imageRoot, 'clones');
    const expected = new Map<string, number>();
    for (const m of this.snaps.values()) {
      if (m.state !== 'available') continue;
      const path = join(dir, `check-${m.id!}.img`);
      const job = await c.call<Job>('clone', { snapshot: m.id!, path, wait: true });
      if (job.state !== 'succeeded') this.lose(`clone of ${m.key} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
      if (ImageWriter.contentSha(path) !== m.sha) this.lose(`clone of ${m.key} differs from the content it was taken of`);
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
    const files = storeFiles(this.layout.dataDir);
    const missing = [...expected.keys()].filter((d) => !files.blocks.has(d));
    const extra = [...files.blocks].filter((d) => !expected.has(d));
    if (missing.length > 0) this.lose(`block files missing from the store: ${missing.join(', ')}`);
    if (extra.length > 0) this.fail(`block files no snapshot references survived gc: ${extra.join(', ')}`);
    const orphanGranules = [...files.granules].filter((d) => !files.blocks.has(d));
    if (orphanGranules.length > 0) this.fail(`granule files of blocks the store no longer holds: ${orphanGranules.join(', ')}`);
    this.stats.granuleFilesMax = Math.max(this.stats.granuleFilesMax, files.granules.size);
    if (files.temp.length > 0) this.fail(`temp files survived gc: ${files.temp.join(', ')}`);
    const verify = await c.call<Job>('store.verify', { wait: true });
    const result = verify.result as VerifyResult | null;
    if (verify.state !== 'succeeded' || !result || result.problems.length > 0 || result.checkedBlocks !== expected.size) {
      this.fail(`store verify: ${verify.state} ${JSON.stringify(verify.result ?? verify.error)}`);
    }
    this.stats.blocksVerified += result!.checkedBlocks;
  }

  private summary(): string {
    const s = this.stats;
    const live = [...this.snaps.values()].filter((m) => m.state === 'available').length;
    return `kills ${s.kills} (start-up ${s.startupKills}, mid-job ${s.killsMidJob}, just accepted ${s.killsAfterAccept}), live snapshots ${live}, ` +
      `made ${s.snapshotsAvailable}, adopted ${s.snapshotsAdopted}, interrupted ${s.snapshotsInterrupted}, rollbacks resumed ${s.rollbacksResumed}, ` +
      `clones checked ${s.clonesChecked}; ops ${this.ops.join(', ')}`;
  }

  private lose(message: string): never {
    this.stats.lost++;
    this.fail(`DATA LOST: ${message}`);
  }

  private fail(message: string): never {
    throw new CrashInvariantError(`round ${this.roundNo} (seed ${this.o.seed}, block size ${this.blockSize}; ops: ${this.ops.join(', ')}): ${message}\n--- daemon log tail ---\n${this.daemon?.stderr().slice(-3000) ?? ''}`);
  }
}

/** Removes a torture directory (images, data dir); safe to call on a partial one. */
export function removeTortureDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
