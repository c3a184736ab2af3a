/**
 * Crash rounds against a served copy-on-write disk: clients write over NBD (4 KiB pages, 512-byte
 * sectors that copy up, zeroes, trims, FUA, flushes, on one or two connections), snapshots and
 * forced rollbacks run between the writes, and the real daemon is SIGKILLed while writes, a
 * snapshot or a rollback are in flight (sometimes again during its start-up). After each restart:
 *
 *  - every sector of the disk holds a version a crash may leave (sector-model.ts): what was last
 *    flushed, written with FUA or frozen by a snapshot, or a write sent since; never older, never
 *    bytes of no write;
 *  - a snapshot whose request was in flight is either gone or complete, and if complete, the disk
 *    holds exactly its content (nothing was written after it);
 *  - a rollback in flight either did not happen or happened whole (rerun to the end if the disk
 *    says it was interrupted);
 *  - every available snapshot, the base included, clones bit-exactly to the content the model
 *    gave it, and the store verifies clean.
 *
 * A broken invariant throws a CrashInvariantError naming the round and the seed to replay.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonClient } from '../../src/daemon/client';
import type { Disk, Job, Snapshot, VerifyResult } from '../../src/engine/types';
import { Random } from '../helpers/random';
import { DaemonProcess, connect, killDuringStartup, makeLayout, runRounds, sleep, type Layout } from './daemon-process';
import { NbdSession } from './nbd-session';
import { CrashInvariantError } from './rounds';
import { SECTOR, SectorModel, ZERO, differences, stamp, stamped, versionsOf } from './sector-model';

const BLOCK = 64 * 1024;
const DISK_BYTES = 8 * 1024 * 1024;
const SECTORS = DISK_BYTES / SECTOR;
const PAGE_SECTORS = 4096 / SECTOR;
const MAX_SNAPSHOTS = 6;

export interface ServedTortureOptions {
  rounds: number;
  /** An empty directory the run may fill; the caller removes it. */
  dir: string;
  seed: number;
  log?: (line: string) => void;
}

export interface ServedTortureStats {
  seed: number;
  rounds: number;
  kills: number;
  startupKills: number;
  /** Kills with NBD writes in flight. */
  killsMidWrite: number;
  killsMidSnapshot: number;
  killsMidRollback: number;
  writesSent: number;
  writesAcked: number;
  fuaWrites: number;
  flushes: number;
  /** Writes sent before a kill whose data the restart found (whether acknowledged or not). */
  unflushedWritesKept: number;
  snapshotsAvailable: number;
  snapshotsInterrupted: number;
  rollbacks: number;
  snapshotsChecked: number;
  /** Versions the model held durable that a restart did not find: must stay 0. */
  lost: number;
}

interface SnapModel {
  name: string;
  versions: Int32Array;
}

type Kill = 'writes' | 'snapshot' | 'rollback' | 'idle';

export async function runServedTorture(o: ServedTortureOptions): Promise<ServedTortureStats> {
  const t = new ServedTorture(o);
  return runRounds(t, o.rounds);
}

class ServedTorture {
  readonly stats: ServedTortureStats;
  daemon: DaemonProcess | undefined;
  private readonly rng: Random;
  private readonly layout: Layout;
  private readonly nbdSocket: string;
  private model!: SectorModel;
  /** Available snapshots and their content; `base` is of the plain disk the clone came from. */
  private readonly snaps = new Map<string, SnapModel>();
  private nextVersion = 1;
  private snapshotNo = 0;
  private roundNo = 0;
  private jobMs = 40;
  private ops: string[] = [];

  constructor(private readonly o: ServedTortureOptions) {
    this.rng = new Random(o.seed);
    this.layout = makeLayout(o.dir, { blockSize: BLOCK });
    this.nbdSocket = join(o.dir, 'nbd.sock');
    this.stats = {
      seed: o.seed, rounds: 0, kills: 0, startupKills: 0, killsMidWrite: 0, killsMidSnapshot: 0, killsMidRollback: 0,
      writesSent: 0, writesAcked: 0, fuaWrites: 0, flushes: 0, unflushedWritesKept: 0, snapshotsAvailable: 0,
      snapshotsInterrupted: 0, rollbacks: 0, snapshotsChecked: 0, lost: 0,
    };
  }

  /** A base image with data blocks and holes, snapshot `base`, and the COW disk `c` cloned from it. */
  async setUp(): Promise<void> {
    mkdirSync(join(this.layout.imageRoot, 'clones'));
    const base = new Int32Array(SECTORS).fill(ZERO);
    const content = Buffer.alloc(DISK_BYTES);
    for (let b = 0; b < DISK_BYTES / BLOCK; b++) {
      if (this.rng.chance(0.3)) continue;
      const first = (b * BLOCK) / SECTOR;
      for (let s = first; s < first + BLOCK / SECTOR; s++) {
        base[s] = 0;
        stamp(0, s, content, s * SECTOR);
      }
    }
    const path = join(this.layout.imageRoot, 'vm.img');
    writeFileSync(path, content);
    this.daemon = await this.start();
    const c = await connect(this.layout);
    try {
      await c.call('disk.add', { path, name: 'vm' });
      const job = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true });
      if (job.state !== 'succeeded') this.fail(`the base snapshot ended ${job.state}`);
      await c.call('clone.cow', { snapshot: 'base', name: 'c' });
    } finally {
      c.close();
    }
    this.snaps.set('base', { name: 'base', versions: base });
    this.model = new SectorModel(base);
  }

  async tearDown(): Promise<void> {
    const code = await this.daemon!.stop();
    if (code !== 0) this.fail(`the daemon exited ${code} on SIGTERM:\n${this.daemon!.stderr().slice(-3000)}`);
    this.daemon = undefined;
  }

  private start(): Promise<DaemonProcess> {
    return DaemonProcess.start(this.layout, ['--nbd-socket', this.nbdSocket]);
  }

  async round(r: number): Promise<void> {
    this.roundNo = r;
    this.ops = [];
    const c = await connect(this.layout);
    let sessions: NbdSession[] = [];
    let inFlight: { snapshot?: SnapModel; rollback?: SnapModel } = {};
    try {
      await this.exportDisk(c);
      sessions = await this.openSessions();
      for (let n = this.rng.int(0, 4); n > 0; n--) {
        const roll = this.rng.next();
        const target = this.pickTarget();
        if (roll < 0.55) await this.writeBatch(sessions, { kill: false });
        else if (roll < 0.75) await this.snapshot(c);
        else if (roll < 0.87 && target !== null) {
          await this.rollback(c, target, true);
          // --force dropped the connections.
          for (const s of sessions) s.close();
          sessions = await this.openSessions();
        } else await this.deleteOne(c);
      }
      const target = this.pickTarget();
      let kill = this.rng.pick<Kill>(['writes', 'writes', 'writes', 'writes', 'writes', 'writes', 'snapshot', 'snapshot', 'rollback', 'idle']);
      if (kill === 'rollback' && target === null) kill = 'snapshot';
      // Whether a kill finds a write unanswered is up to the draws and the daemon's speed: a run
      // that has not had one by its last round gets one for certain.
      const cutShort = r === this.o.rounds && this.stats.writesAcked === this.stats.writesSent;
      if (cutShort) kill = 'writes';
      if (kill === 'writes') {
        await this.writeBatch(sessions, { kill: true, cutShort });
        this.stats.killsMidWrite++;
      } else if (kill === 'snapshot') {
        inFlight = { snapshot: { name: `r${r}`, versions: this.model.latest.slice() } };
        this.ops.push(`snapshot ${inFlight.snapshot!.name} (killed)`);
        void c.call('snapshot.create', { disk: 'c', name: inFlight.snapshot!.name, wait: true }).catch(() => undefined);
        await sleep(this.rng.int(0, Math.ceil(1.3 * this.jobMs)));
        this.stats.killsMidSnapshot++;
      } else if (kill === 'rollback') {
        inFlight = { rollback: target! };
        this.ops.push(`rollback to ${inFlight.rollback!.name} (killed)`);
        void c.call('rollback', { disk: 'c', snapshot: inFlight.rollback!.name, force: true, wait: true }).catch(() => undefined);
        await sleep(this.rng.int(0, Math.ceil(1.3 * this.jobMs)));
        this.stats.killsMidRollback++;
      }
      await this.daemon!.kill();
      this.stats.kills++;
    } finally {
      for (const s of sessions) s.close();
      c.close();
    }
    if (this.rng.chance(0.3)) await this.killDuringStartup();
    this.daemon = await this.start();
    await this.check(inFlight);
    this.stats.rounds++;
    this.o.log?.(`round ${r}: ${this.summary()}`);
  }

  // ------------------------------------------------------------------ the operations

  /** Exports live as long as the daemon: started after each restart, already there otherwise. */
  private async exportDisk(c: DaemonClient): Promise<void> {
    await c.call('export.start', { disk: 'c', writable: true }).catch((e: { code?: string }) => {
      if (e.code !== 'DiskExported') throw e;
    });
  }

  private async openSessions(): Promise<NbdSession[]> {
    const out: NbdSession[] = [];
    for (let n = this.rng.int(1, 2); n > 0; n--) {
      const { session, size } = await NbdSession.open(this.nbdSocket, 'c');
      if (size !== DISK_BYTES) this.fail(`the export is ${size} bytes, not ${DISK_BYTES}`);
      out.push(session);
    }
    return out;
  }

  /**
   * Up to 24 writes at once over the sessions, no two touching the same sector (their order is
   * the client's to choose, not the server's). Without a kill: all acknowledged, then maybe a
   * flush. With one: the daemon is killed after a random number of acknowledgements, and with
   * `cutShort` one more write is sent only in part, so that it cannot have been answered.
   */
  private async writeBatch(sessions: NbdSession[], o: { kill: boolean; cutShort?: boolean }): Promise<void> {
    const used = new Uint8Array(SECTORS);
    const writes: Array<Promise<void>> = [];
    const n = this.rng.int(1, 24);
    const killAfter = this.rng.int(0, n);
    let acked = 0;
    let reachKill: () => void = () => undefined;
    const killPoint = new Promise<void>((r) => { reachKill = r; });
    if (killAfter === 0) reachKill();
    for (let i = 0; i < n; i++) {
      const w = this.pickWrite(used);
      if (w === null) continue;
      const session = this.rng.pick(sessions);
      const v = w.kind === 'zero' || w.kind === 'trim' ? ZERO : this.nextVersion++;
      this.model.sent(w.first, w.count, v);
      this.stats.writesSent++;
      const fua = w.kind === 'write' && this.rng.chance(0.15);
      if (fua) this.stats.fuaWrites++;
      const offset = w.first * SECTOR;
      const bytes = w.count * SECTOR;
      const sent = w.kind === 'write' ? session.write(offset, stamped(v, w.first, w.count), fua)
        : w.kind === 'zero' ? session.writeZeroes(offset, bytes, this.rng.chance(0.5) ? 0 : 2 /* NO_HOLE */)
          : session.trim(offset, bytes);
      writes.push(sent.then((error) => {
        if (error !== 0) this.fail(`NBD ${w.kind} of ${bytes} bytes at ${offset} failed with error ${error}`);
        this.model.acked(w.first, w.count, v, fua);
        this.stats.writesAcked++;
        if (++acked === killAfter) reachKill();
      }, (e: Error) => {
        if (!o.kill) throw e;
      }));
    }
    if (o.kill && o.cutShort) {
      // A free page is left: the writes above cover at most 24 * 64 of the disk's 2048 pages.
      let first = 0;
      while (used.subarray(first, first + PAGE_SECTORS).some((x) => x !== 0)) first += PAGE_SECTORS;
      const v = this.nextVersion++;
      this.model.sent(first, PAGE_SECTORS, v);
      this.stats.writesSent++;
      const sent = this.rng.int(0, PAGE_SECTORS - 1) * SECTOR;
      void this.rng.pick(sessions).writeCutShort(first * SECTOR, stamped(v, first, PAGE_SECTORS), sent).catch(() => undefined);
      this.ops.push(`a write of ${PAGE_SECTORS * SECTOR} bytes cut off after ${sent}`);
    }
    if (o.kill) {
      this.ops.push(`${writes.length} writes (killed after ${killAfter} acks)`);
      await Promise.race([killPoint, Promise.all(writes)]);
      if (this.rng.chance(0.3)) void this.rng.pick(sessions).flush().catch(() => undefined);
      await sleep(this.rng.int(0, 2));
      return;
    }
    await Promise.all(writes);
    this.ops.push(`${writes.length} writes`);
    if (this.rng.chance(0.5)) {
      const error = await this.rng.pick(sessions).flush();
      if (error !== 0) this.fail(`NBD flush failed with error ${error}`);
      this.model.durable();
      this.stats.flushes++;
      this.ops.push('flush');
    }
  }

  /** Mostly whole 4 KiB pages; sometimes sectors that cover a page in part (a copy-up). */
  private pickWrite(used: Uint8Array): { kind: 'write' | 'zero' | 'trim'; first: number; count: number } | null {
    const roll = this.rng.next();
    const kind = roll < 0.8 ? 'write' : roll < 0.9 ? 'zero' : 'trim';
    for (let attempt = 0; attempt < 5; attempt++) {
      let first: number;
      let count: number;
      if (kind === 'write' && this.rng.chance(0.3)) {
        first = this.rng.int(0, SECTORS - 1);
        count = Math.min(this.rng.int(1, 2 * PAGE_SECTORS), SECTORS - first);
      } else {
        first = this.rng.int(0, SECTORS / PAGE_SECTORS - 1) * PAGE_SECTORS;
        count = Math.min(this.rng.int(1, 64) * PAGE_SECTORS, SECTORS - first);
      }
      if (used.subarray(first, first + count).some((x) => x !== 0)) continue;
      used.fill(1, first, first + count);
      return { kind, first, count };
    }
    return null;
  }

  private async snapshot(c: DaemonClient): Promise<void> {
    const name = `r${this.roundNo}-${++this.snapshotNo}`;
    const versions = this.model.latest.slice();
    const started = Date.now();
    const job = await c.call<Job>('snapshot.create', { disk: 'c', name, wait: true });
    this.jobMs = 0.8 * this.jobMs + 0.2 * (Date.now() - started);
    if (job.state !== 'succeeded') this.fail(`snapshot ${name} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
    this.snaps.set(name, { name, versions });
    this.model.durable();
    this.stats.snapshotsAvailable++;
    this.ops.push(`snapshot ${name}`);
    if (this.snapshotsOfC() > MAX_SNAPSHOTS) await this.deleteOne(c);
  }

  private async rollback(c: DaemonClient, target: SnapModel, countIt: boolean): Promise<void> {
    const started = Date.now();
    const job = await c.call<Job>('rollback', { disk: 'c', snapshot: target.name, force: true, wait: true });
    this.jobMs = 0.8 * this.jobMs + 0.2 * (Date.now() - started);
    if (job.state !== 'succeeded') this.fail(`rollback to ${target.name} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
    this.model.reset(target.versions);
    if (countIt) this.stats.rollbacks++;
    this.ops.push(`rollback to ${target.name}`);
  }

  /** A snapshot of `c` to roll back to (its origin `base` is another disk's), or null if it has none. */
  private pickTarget(): SnapModel | null {
    const mine = [...this.snaps.values()].filter((s) => s.name !== 'base');
    return mine.length === 0 ? null : this.rng.pick(mine);
  }

  /**
   * Deletes a snapshot of `c`. The one `c` now stands on is refused (SnapshotHasClones), as is the
   * target of a rollback a crash interrupted (SnapshotBusy): both are the daemon keeping its word.
   */
  private async deleteOne(c: DaemonClient): Promise<void> {
    const mine = [...this.snaps.values()].filter((s) => s.name !== 'base');
    if (mine.length === 0) return;
    const victim = this.rng.pick(mine);
    try {
      await c.call('snapshot.delete', { snapshot: victim.name });
      this.snaps.delete(victim.name);
      this.ops.push(`delete ${victim.name}`);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'SnapshotHasClones' && code !== 'SnapshotBusy') throw e;
    }
  }

  private snapshotsOfC(): number {
    return this.snaps.size - 1;
  }

  private async killDuringStartup(): Promise<void> {
    const { listening } = await killDuringStartup(this.layout, this.rng.int(0, 60), ['--nbd-socket', this.nbdSocket]);
    this.stats.kills++;
    if (!listening) this.stats.startupKills++;
  }


  // ------------------------------------------------------------------ the checks

  private async check(inFlight: { snapshot?: SnapModel; rollback?: SnapModel }): Promise<void> {
    const c = await connect(this.layout);
    try {
      const running = (await c.call<Job[]>('job.list')).filter((j) => j.state === 'running');
      if (running.length > 0) this.fail(`jobs still running after a restart: ${running.map((j) => `${j.kind} ${j.id}`).join(', ')}`);
      await this.exportDisk(c);
      let observed = await this.readDisk();
      const listed = new Map((await c.call<Snapshot[]>('snapshot.list')).map((s) => [s.name, s]));
      for (const s of listed.values()) {
        if (s.status === 'creating') this.fail(`snapshot ${s.name} is still creating after a restart`);
        if (!this.snaps.has(s.name) && s.name !== inFlight.snapshot?.name) this.fail(`snapshot ${s.name} is unknown to the test`);
      }
      for (const m of this.snaps.values()) {
        if (listed.get(m.name)?.status !== 'available') this.lose(`snapshot ${m.name} is ${listed.get(m.name)?.status ?? 'gone'}`);
      }

      if (inFlight.snapshot) observed = await this.settleSnapshot(c, inFlight.snapshot, listed.get(inFlight.snapshot.name), observed);
      else if (inFlight.rollback) observed = await this.settleRollback(c, inFlight.rollback, observed);
      else this.checkCrashable(observed);
      this.model.reset(observed);

      for (const m of this.snaps.values()) await this.checkClone(c, m, listed.get(m.name)!);
      const verify = await c.call<Job>('store.verify', { wait: true });
      const result = verify.result as VerifyResult | null;
      if (verify.state !== 'succeeded' || !result || result.problems.length > 0) this.fail(`store verify: ${verify.state} ${JSON.stringify(verify.result ?? verify.error)}`);
    } finally {
      c.close();
    }
  }

  private checkCrashable(observed: Int32Array): void {
    const bad = this.model.impossible(observed);
    if (bad.length > 0) this.lose(`the disk after a restart: ${bad.join('; ')}`);
    for (let s = 0; s < SECTORS; s++) {
      if (observed[s] !== this.model.stable[s]) { this.stats.unflushedWritesKept++; break; }
    }
  }

  /** The snapshot killed in flight: gone (or failed), or complete and then the disk's exact content. */
  private async settleSnapshot(c: DaemonClient, snap: SnapModel, listed: Snapshot | undefined, observed: Int32Array): Promise<Int32Array> {
    if (listed?.status !== 'available') {
      this.stats.snapshotsInterrupted++;
      if (listed) await c.call('snapshot.delete', { snapshot: snap.name });
      this.checkCrashable(observed);
      return observed;
    }
    const diff = differences(observed, snap.versions);
    if (diff.length > 0) this.lose(`snapshot ${snap.name} completed, but the disk no longer holds what it froze: ${diff.join('; ')}`);
    this.snaps.set(snap.name, snap);
    this.stats.snapshotsAvailable++;
    return observed;
  }

  /** The rollback killed in flight: rerun to the end if the disk says so; otherwise all or nothing. */
  private async settleRollback(c: DaemonClient, target: SnapModel, observed: Int32Array): Promise<Int32Array> {
    const disk = await c.call<Disk>('disk.show', { disk: 'c' });
    if (disk.pendingRollback) {
      await this.rollback(c, target, false);
      observed = await this.readDisk();
    }
    if (differences(observed, target.versions, 1).length === 0) {
      this.stats.rollbacks++;
      return observed;
    }
    if (disk.pendingRollback) this.lose(`the rerun rollback to ${target.name} left ${differences(observed, target.versions).join('; ')}`);
    this.checkCrashable(observed);
    return observed;
  }

  private async readDisk(): Promise<Int32Array> {
    const { session } = await NbdSession.open(this.nbdSocket, 'c');
    try {
      const parts: Buffer[] = [];
      for (let at = 0; at < DISK_BYTES; at += 1024 * 1024) parts.push(await session.read(at, 1024 * 1024));
      return this.decode(Buffer.concat(parts), 'the served disk');
    } finally {
      session.close();
    }
  }

  private async checkClone(c: DaemonClient, m: SnapModel, listed: Snapshot): Promise<void> {
    if (m.name !== 'base' && listed.consistency !== 'point-in-time') this.fail(`snapshot ${m.name} is ${listed.consistency}, not point-in-time`);
    const path = join(this.layout.imageRoot, 'clones', `${m.name}.img`);
    const job = await c.call<Job>('clone', { snapshot: m.name, path, wait: true });
    if (job.state !== 'succeeded') this.lose(`clone of ${m.name} ended ${job.state}: ${job.error?.code} ${job.error?.message}`);
    const got = this.decode(readFileSync(path), `the clone of ${m.name}`);
    rmSync(path);
    const diff = differences(got, m.versions);
    if (diff.length > 0) this.lose(`snapshot ${m.name} no longer holds what it froze: ${diff.join('; ')}`);
    this.stats.snapshotsChecked++;
  }

  private decode(content: Buffer, what: string): Int32Array {
    try {
      return versionsOf(content, what);
    } catch (e) {
      return this.lose((e as Error).message);
    }
  }

  private summary(): string {
    const s = this.stats;
    return `kills ${s.kills} (writes ${s.killsMidWrite}, snapshot ${s.killsMidSnapshot}, rollback ${s.killsMidRollback}, start-up ${s.startupKills}), ` +
      `writes ${s.writesAcked}/${s.writesSent} acked, snapshots ${this.snapshotsOfC()} live, ${s.snapshotsInterrupted} interrupted, checked ${s.snapshotsChecked}`;
  }

  private lose(message: string): never {
    this.stats.lost++;
    this.fail(`DATA LOST: ${message}`);
  }

  private fail(message: string): never {
    throw new CrashInvariantError(`served round ${this.roundNo} (seed ${this.o.seed}; ops: ${this.ops.join(', ')}): ${message}\n--- daemon log tail ---\n${this.daemon?.stderr().slice(-3000) ?? ''}`);
  }
}
