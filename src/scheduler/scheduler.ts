/**
 * The policy scheduler: wakes at every due time (and at least every tickMs, so a wall-clock jump
 * is noticed), and for every disk bound to an enabled policy whose newest due time has not been
 * handled yet, starts the automatic snapshot (then retention, policies.ts).
 *
 * Semantics an operator can rely on:
 * - Only the newest due time counts. Due times missed while the daemon was down are not replayed
 *   in a burst: after a restart each disk gets at most one catch-up snapshot, for the newest one.
 * - A disk that is busy (DiskBusy: another job runs on it) is retried at every tick until it is
 *   free, for at most retryWindowMs (one hour) from the first attempt; then the due time is
 *   recorded as skipped in the policy's history. A newer due time arriving meanwhile supersedes
 *   the older one, which is recorded as skipped at once.
 * - Any other refusal (RollbackIncomplete, an image that disappeared, ...) is recorded as failed
 *   at once; retrying would not change it.
 *
 * State: which due time each disk is waiting to retry (in memory only: after a restart the newest
 * due time simply gets its catch-up attempt), and the runs in flight. Everything else, including
 * the last due time handled per disk, is in the catalog.
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { EngineLogger } from '../engine/engine';
import type { Policies } from '../engine/policies';
import { systemClock, type Clock, type Timer } from './clock';
import { nextDue, previousDue } from './due-times';

export type SchedulerPolicies = Pick<Policies, 'scheduled' | 'startScheduled' | 'recordNotTaken'>;

export interface SchedulerOptions {
  clock?: Clock;
  log?: EngineLogger;
  /** Longest sleep between passes, and the retry interval of a busy disk (default 30 s). */
  tickMs?: number;
  /** How long a busy disk is retried before its due time is skipped (default one hour). */
  retryWindowMs?: number;
}

interface Waiting { policyId: string; dueAt: number; since: number }

const quiet: EngineLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class Scheduler {
  readonly clock: Clock;
  private readonly log: EngineLogger;
  private readonly tickMs: number;
  private readonly retryWindowMs: number;
  private readonly waiting = new Map<string, Waiting>();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: Timer | null = null;
  private ticking: Promise<void> | null = null;
  private stopped = true;

  constructor(private readonly policies: SchedulerPolicies, o: SchedulerOptions = {}) {
    this.clock = o.clock ?? systemClock;
    this.log = o.log ?? quiet;
    this.tickMs = o.tickMs ?? 30_000;
    this.retryWindowMs = o.retryWindowMs ?? 3_600_000;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.arm(0);
  }

  /** Stops waking up; running snapshots are the engine's to stop (it cancels them on close). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    if (this.ticking) await this.ticking;
  }

  /** Resolves when every run started so far has ended (snapshot and retention). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Disks waiting for a busy disk to become free: diskId → the due time being retried. */
  pending(): Map<string, Date> {
    return new Map([...this.waiting].map(([disk, w]) => [disk, new Date(w.dueAt)]));
  }

  /** One pass over every binding at the clock's current time. */
  tick(): Promise<void> {
    if (!this.ticking) {
      this.ticking = Promise.resolve().then(() => this.pass()).finally(() => { this.ticking = null; });
    }
    return this.ticking;
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimer(ms, () => {
      void this.tick().finally(() => this.arm(this.sleepMs()));
    });
  }

  /** Until the next due time of any policy (plus a little), at most tickMs, at least one second. */
  private sleepMs(): number {
    const now = this.clock.now();
    let next = now.getTime() + this.tickMs;
    try {
      for (const { policy } of this.policies.scheduled()) next = Math.min(next, nextDue(policy, now).getTime() + 50);
    } catch (err) {
      this.log.error({ err }, 'scheduler could not compute the next due time');
    }
    return Math.max(1000, next - now.getTime());
  }

  private pass(): void {
    const now = this.clock.now();
    const t = now.getTime();
    const seen = new Set<string>();
    let scheduled;
    try {
      scheduled = this.policies.scheduled();
    } catch (err) {
      this.log.error({ err }, 'scheduler could not read the policies');
      return;
    }
    for (const { policy, bindings } of scheduled) {
      for (const b of bindings) {
        seen.add(b.diskId);
        try {
          // A due time before the binding or the policy's last change is not owed: a new schedule starts fresh.
          this.consider(policy.id, policy, b.diskId, b.lastDueAt, [b.boundAt, policy.updatedAt], now, t);
        } catch (err) {
          this.log.error({ err, policyId: policy.id, diskId: b.diskId }, 'scheduler pass failed for a disk');
        }
      }
    }
    for (const disk of [...this.waiting.keys()]) if (!seen.has(disk)) this.waiting.delete(disk);
  }

  private consider(
    policyId: string, schedule: Parameters<typeof previousDue>[0], diskId: string,
    lastDueAt: string | null, notBefore: string[], now: Date, t: number,
  ): void {
    const due = previousDue(schedule, now).getTime();
    const handled = Math.max(...notBefore.map((x) => Date.parse(x)), lastDueAt === null ? 0 : Date.parse(lastDueAt));
    let w = this.waiting.get(diskId);
    if (w && (w.policyId !== policyId || w.dueAt < due)) {
      if (w.policyId === policyId) {
        this.policies.recordNotTaken(policyId, diskId, new Date(w.dueAt), now, 'skipped',
          new BlocksnapError('DiskBusy', `the disk stayed busy until the next due time ${new Date(due).toISOString()}`));
      }
      this.waiting.delete(diskId);
      w = undefined;
    }
    if (due <= handled) return;
    try {
      const run = this.policies.startScheduled(policyId, diskId, new Date(due), now);
      this.waiting.delete(diskId);
      const done: Promise<void> = run.done.then(
        () => undefined,
        (err: unknown) => this.log.error({ err, policyId, diskId }, 'could not record the end of a policy run'),
      ).finally(() => this.inFlight.delete(done));
      this.inFlight.add(done);
    } catch (err) {
      const e = toBlocksnapError(err);
      if (e.code !== 'DiskBusy') {
        this.waiting.delete(diskId);
        this.policies.recordNotTaken(policyId, diskId, new Date(due), now, 'failed', e);
        return;
      }
      const since = w?.since ?? t;
      if (t - since >= this.retryWindowMs) {
        this.waiting.delete(diskId);
        this.policies.recordNotTaken(policyId, diskId, new Date(due), now, 'skipped',
          new BlocksnapError('DiskBusy', `the disk was busy from ${new Date(since).toISOString()} for the whole retry window: ${e.message}`));
        return;
      }
      if (!w) this.log.info({ policyId, diskId, dueAt: new Date(due).toISOString() }, 'disk busy at its due time; retrying until it is free');
      this.waiting.set(diskId, { policyId, dueAt: due, since });
    }
  }
}
