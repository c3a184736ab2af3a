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
 * - Due times before the binding or the last change of the schedule (hours, weekdays, time zone,
 *   enabled) are not owed. Other policy updates change nothing here: a due time waiting for a busy
 *   disk still runs. One waiting across a schedule change is recorded as skipped, saying so.
 * - A run the daemon died in (SIGKILL, power loss) is found on the first pass for its binding, of
 *   any policy, enabled or not, and recorded as failed (Interrupted); a scheduled run's due time
 *   is taken again (Policies.recoverInterrupted).
 * - The wall clock stepped back (a clock that ran ahead corrected by NTP) leaves the handled due
 *   times in the future, which would hold the policy back until the clock caught up. Beyond
 *   CLOCK_STEP_TOLERANCE_MS that is logged as a warning and brought back to now, so the next due
 *   time by the corrected clock runs. A step forward looks like time passing and is not guessed at.
 *
 * State: which due time each disk is waiting to retry (in memory only: after a restart the newest
 * due time simply gets its catch-up attempt), the bindings checked for interrupted runs, and the
 * runs in flight. Everything else, including the last due time handled per disk, is in the catalog.
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { PolicyBinding, PolicyRecord } from '../catalog/model-records';
import type { EngineLogger } from '../engine/engine';
import { scheduleChangedAt, type Policies } from '../engine/policies';
import { systemClock, type Clock, type Timer } from './clock';
import { nextDue, previousDue } from './due-times';

export type SchedulerPolicies = Pick<Policies, 'bound' | 'scheduled' | 'startScheduled' | 'recordNotTaken' | 'recoverInterrupted' | 'clampFuture'>;

/**
 * How far in the future a handled time may lie before the wall clock is taken to have been set
 * back. A due time handled is never later than the clock that handled it, so anything beyond this
 * was stamped by a clock that ran ahead; a few minutes absorb small corrections without retaking a
 * due time that just ran.
 */
export const CLOCK_STEP_TOLERANCE_MS = 5 * 60_000;

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
  /** `policyId/diskId` of the bindings already checked for runs the daemon died in. */
  private readonly recovered = new Set<string>();
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
      // Every policy's: a `policy run` of a disabled one may have been interrupted too. Recovery
      // may move a binding's lastDueAt back, so the scheduled bindings are read after it.
      this.recoverInterrupted(this.policies.bound());
      scheduled = this.policies.scheduled();
    } catch (err) {
      this.log.error({ err }, 'scheduler could not read the policies');
      return;
    }
    for (const { policy, bindings } of scheduled) {
      // Once per policy, not per disk: ~1 ms in a zone with DST, so a policy over a thousand disks
      // held the event loop (every export and client) for a second per pass.
      let due: number;
      try {
        due = previousDue(policy, now).getTime();
      } catch (err) {
        this.log.error({ err, policyId: policy.id }, 'scheduler could not compute a policy\'s due time');
        continue;
      }
      for (const b of bindings) {
        seen.add(b.diskId);
        try {
          this.consider(policy, b, now, t, due);
        } catch (err) {
          this.log.error({ err, policyId: policy.id, diskId: b.diskId }, 'scheduler pass failed for a disk');
        }
      }
    }
    for (const disk of [...this.waiting.keys()]) if (!seen.has(disk)) this.waiting.delete(disk);
  }

  /** Once per binding: records the runs the daemon died in and makes their due time owed again. */
  private recoverInterrupted(bound: ReturnType<SchedulerPolicies['bound']>): void {
    for (const { policy, bindings } of bound) {
      for (const b of bindings) {
        const key = `${policy.id}/${b.diskId}`;
        if (this.recovered.has(key)) continue;
        let events;
        try {
          events = this.policies.recoverInterrupted(policy.id, b.diskId);
        } catch (err) {
          // Left unchecked: the next pass tries again; the disk's schedule goes on meanwhile.
          this.log.error({ err, policyId: policy.id, diskId: b.diskId }, 'scheduler could not check a disk for interrupted policy runs');
          continue;
        }
        this.recovered.add(key);
        for (const e of events) {
          this.log.warn({ policyId: policy.id, policy: policy.name, diskId: b.diskId, snapshotId: e.snapshotId, dueAt: e.dueAt },
            'a policy run was interrupted by a daemon stop; recorded as failed (Interrupted)');
        }
      }
    }
  }

  /** `due`: the policy's latest due time at or before now (previousDue). */
  private consider(policy: PolicyRecord, b: PolicyBinding, now: Date, t: number, due: number): void {
    const policyId = policy.id;
    const diskId = b.diskId;
    // A due time before the binding or the schedule's last change is not owed: a new schedule starts fresh.
    let fresh = Math.max(Date.parse(b.boundAt), Date.parse(scheduleChangedAt(policy)));
    let handled = Math.max(fresh, b.lastDueAt === null ? 0 : Date.parse(b.lastDueAt));
    if (handled > t + CLOCK_STEP_TOLERANCE_MS) {
      this.log.warn({ policyId, policy: policy.name, diskId, handledUpTo: new Date(handled).toISOString(), now: now.toISOString() },
        'the wall clock was set back: this disk\'s schedule was handled up to a time still ahead; counting from now, the next due time runs');
      this.policies.clampFuture(policyId, diskId, now);
      handled = Math.min(handled, t);
      fresh = Math.min(fresh, t);
    }
    let w = this.waiting.get(diskId);
    if (w && w.dueAt > t + CLOCK_STEP_TOLERANCE_MS) {
      // Waiting for a due time the set-back clock has not reached yet: that is the clock, not the disk.
      this.waiting.delete(diskId);
      w = undefined;
    }
    if (w && w.policyId === policyId && w.dueAt <= fresh) {
      // The schedule changed (or the disk was bound anew) while this due time waited: not owed any more.
      const why = Date.parse(b.boundAt) >= w.dueAt
        ? `the disk was bound to the policy anew at ${b.boundAt}`
        : `the policy's schedule changed at ${scheduleChangedAt(policy)}`;
      this.policies.recordNotTaken(policyId, diskId, new Date(w.dueAt), now, 'skipped',
        new BlocksnapError('DiskBusy', `the disk was busy at this due time and ${why} before it was free; the schedule runs from its next due time`));
      this.waiting.delete(diskId);
      w = undefined;
    }
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
