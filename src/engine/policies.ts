/**
 * Automatic snapshot policies: a schedule (hours of the day and weekdays in a time zone) and a
 * retention, bound to disks (at most one policy per disk; the binding is keyed by disk id so the
 * catalog itself enforces that). This module owns the records and what one run of a policy on
 * one disk does: take an `auto` snapshot named `auto-<policy>-<UTC time>`, wait for it, then
 * apply retention to that disk's automatic snapshots only. *When* to run is the scheduler's
 * business (src/scheduler); `policy run` runs a policy now.
 *
 * State: PolicyRecord (with a capped history of what runs did, and when its schedule last
 * changed) and PolicyBinding per disk (with the last scheduled time handled, so a restart neither
 * repeats nor replays due times). A scheduled run the daemon died in is found again from the
 * records it left (recoverInterrupted): no separate journal.
 *
 * A policy with `replicateTo` starts, after each successful run on a disk, a replication job of
 * the disk's automatic snapshots to that remote: the new one, and any an earlier failed
 * replication left behind (those already on the remote cost one HEAD each). Its outcome is written
 * into the run's event when the job ends; one replication per policy and disk runs at a time (in
 * memory: `replicating`), a run meanwhile records `skipped` and the next run catches up.
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { PolicyBinding, PolicyEvent, PolicyRecord, PolicyReplication } from '../catalog/model-records';
import type { SnapshotRecord } from '../catalog/records';
import type { Engine } from './engine';
import type { EngineInternals } from './internals';
import { newId, resolveIdOrName } from './ids';
import { POLICY_NAME_MAX, uniqueName, validateName } from './names';
import { validateDescription } from './text-fields';
import { quotaEvictions } from './quotas';
import { deleteInBatches } from './delete-in-batches';
import { expiredSnapshots, resolveRetention, type Retention, type RetentionInput } from './retention';
import { validateTimeZone } from './time-zone';
import type { Job } from './types';


export interface Policy extends Omit<PolicyRecord, 'history' | 'scheduleChangedAt'> {
  /** When hours, weekdays, time zone or enabled last changed (updatedAt for older records). */
  scheduleChangedAt: string;
  /** Disks bound to the policy, oldest binding first. */
  diskIds: string[];
  history: PolicyEvent[];
}

/** Due times at or before this are not owed: a new or changed schedule starts fresh. */
export function scheduleChangedAt(p: PolicyRecord): string {
  return p.scheduleChangedAt ?? p.updatedAt;
}

function sameList(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export interface PolicySpec {
  name: string;
  description?: string;
  hours: number[];
  weekdays?: number[];
  timeZone?: string;
  retention?: RetentionInput;
  enabled?: boolean;
  /** A remote's name; null (or "" in an update) replicates nothing. */
  replicateTo?: string | null;
}

export type PolicyPatch = Partial<PolicySpec>;

export interface PolicyRunResult {
  policyId: string;
  startedAt: string;
  /** One event per bound disk. */
  disks: PolicyEvent[];
}

/** A started run on one disk: the snapshot job, and its end (snapshot, then retention). */
export interface PolicyDiskRun {
  job: Job;
  done: Promise<PolicyEvent>;
}

function intList(what: string, v: unknown, min: number, max: number): number[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((n) => Number.isSafeInteger(n) && n >= min && n <= max)) {
    throw new BlocksnapError('InvalidArgument', `${what} must be a non-empty list of integers from ${min} to ${max}`);
  }
  return [...new Set(v as number[])].sort((a, b) => a - b);
}

/** `auto-<policy>-20261122T020000Z`: the UTC time the run started, sortable and unambiguous. */
export function autoSnapshotName(policyName: string, at: Date): string {
  const iso = at.toISOString();
  return `auto-${policyName}-${iso.slice(0, 10).replace(/-/g, '')}T${iso.slice(11, 19).replace(/:/g, '')}Z`;
}

export class Policies {
  /** `policyId/diskId` → the replication job running for it. */
  private readonly replicating = new Map<string, string>();
  /** Runs not yet ended: their retention yields between batches, so a stop waits for them (settle). */
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly engine: Engine, private readonly i: EngineInternals) {}

  create(spec: PolicySpec): Policy {
    const name = this.checkName(spec.name, null);
    const now = this.i.now().toISOString();
    const rec: PolicyRecord = {
      id: newId('p'), name,
      description: spec.description === undefined ? '' : validateDescription(spec.description),
      hours: intList('hours', spec.hours, 0, 23),
      weekdays: spec.weekdays === undefined ? [1, 2, 3, 4, 5, 6, 7] : intList('weekdays', spec.weekdays, 1, 7),
      timeZone: spec.timeZone === undefined ? 'UTC' : validateTimeZone(spec.timeZone),
      retention: resolveRetention(spec.retention),
      enabled: spec.enabled ?? true,
      replicateTo: this.checkRemote(spec.replicateTo),
      createdAt: now, updatedAt: now, scheduleChangedAt: now, history: [],
    };
    this.i.model.txn(() => this.i.model.putPolicy(rec));
    this.i.log.info({ policyId: rec.id, name }, 'policy created');
    return this.view(rec);
  }

  list(): Policy[] { return this.i.model.allPolicies().map((p) => this.view(p)); }

  get(ref: string): Policy { return this.view(this.resolve(ref)); }

  /**
   * Only the fields given change; retention, given in either style, replaces the whole old one.
   * A change of the schedule itself (hours, weekdays, time zone, enabled) starts it fresh: due
   * times before the change are not owed. Any other change (name, description, retention,
   * replication) leaves the schedule's state alone, so a due time waiting for a busy disk still runs.
   */
  update(ref: string, patch: PolicyPatch): Policy {
    const cur = this.resolve(ref);
    const next: PolicyRecord = { ...cur, updatedAt: this.i.now().toISOString() };
    if (patch.name !== undefined) next.name = this.checkName(patch.name, cur.id);
    if (patch.description !== undefined) next.description = validateDescription(patch.description);
    if (patch.hours !== undefined) next.hours = intList('hours', patch.hours, 0, 23);
    if (patch.weekdays !== undefined) next.weekdays = intList('weekdays', patch.weekdays, 1, 7);
    if (patch.timeZone !== undefined) next.timeZone = validateTimeZone(patch.timeZone);
    if (patch.retention !== undefined) next.retention = resolveRetention(patch.retention, cur.retention);
    if (patch.enabled !== undefined) next.enabled = patch.enabled;
    if (patch.replicateTo !== undefined) next.replicateTo = this.checkRemote(patch.replicateTo);
    const rescheduled = !sameList(next.hours, cur.hours) || !sameList(next.weekdays, cur.weekdays)
      || next.timeZone !== cur.timeZone || next.enabled !== cur.enabled;
    next.scheduleChangedAt = rescheduled ? next.updatedAt : scheduleChangedAt(cur);
    this.i.model.txn(() => this.i.model.putPolicy(next));
    return this.view(next);
  }

  /**
   * Unbinds every disk; the automatic snapshots it made stay. They are still automatic snapshots
   * of their disk: a policy bound to the disk later applies its retention (and the quota its
   * evictions) to all of them, not only to those it made itself.
   */
  delete(ref: string): Policy {
    const p = this.resolve(ref);
    const before = this.view(p);
    this.i.model.txn(() => {
      for (const b of this.i.model.bindingsOf(p.id)) this.i.model.deleteBinding(b.diskId);
      this.i.model.deletePolicy(p.id);
    });
    this.i.log.info({ policyId: p.id }, 'policy deleted');
    return before;
  }

  bind(ref: string, diskRefs: string[]): Policy {
    const p = this.resolve(ref);
    const disks = diskRefs.map((d) => this.engine.getDisk(d));
    const now = this.i.now().toISOString();
    this.i.model.txn(() => {
      for (const d of disks) {
        const b = this.i.model.getBinding(d.id);
        if (b && b.policyId === p.id) continue;
        if (b && this.i.model.getPolicy(b.policyId)) {
          const other = this.i.model.getPolicy(b.policyId)!;
          throw new BlocksnapError('DiskHasPolicy', `disk ${d.name} is bound to policy ${other.name} (${other.id}); unbind it there first`, { diskId: d.id, policyId: other.id });
        }
        this.i.model.putBinding({ diskId: d.id, policyId: p.id, boundAt: now, lastDueAt: null });
      }
    });
    return this.view(p);
  }

  unbind(ref: string, diskRefs: string[]): Policy {
    const p = this.resolve(ref);
    // A disk named twice (by name and by id, say) is unbound once, as bind binds it once.
    const disks = [...new Map(diskRefs.map((r) => this.engine.getDisk(r)).map((d) => [d.id, d])).values()];
    this.i.model.txn(() => {
      for (const d of disks) {
        if (this.i.model.getBinding(d.id)?.policyId !== p.id) {
          throw new BlocksnapError('DiskNotBound', `disk ${d.name} is not bound to policy ${p.name}`, { diskId: d.id, policyId: p.id });
        }
        this.i.model.deleteBinding(d.id);
      }
    });
    return this.view(p);
  }

  /**
   * Runs the policy now on every bound disk, in parallel: a snapshot each, then retention. A busy
   * disk is reported (DiskBusy) rather than waited for: the caller decides whether to retry.
   * `started` is told each snapshot job as it starts, before any ends.
   */
  async run(ref: string, now: Date = this.i.now(), o: { started?: (job: Job) => void } = {}): Promise<PolicyRunResult> {
    const p = this.resolve(ref);
    const bindings = this.liveBindings(p.id);
    // Before the retention of this run deletes the failed snapshots that are their only trace.
    for (const b of bindings) this.recoverInterrupted(p.id, b.diskId);
    const runs = bindings.map((b) => {
      try {
        const r = this.startRun(p.id, b.diskId, now, now);
        o.started?.(r.job);
        return r.done;
      } catch (err) {
        const e = this.event(now, now, b.diskId, 'failed', null, [], err);
        this.i.model.txn(() => this.i.model.appendPolicyEvent(p.id, e));
        return Promise.resolve(e);
      }
    });
    return { policyId: p.id, startedAt: now.toISOString(), disks: await Promise.all(runs) };
  }

  // ---------------------------------------------------------------- for the scheduler

  /** Every policy with its bindings (bindings of removed disks are dropped on the way). */
  bound(): Array<{ policy: PolicyRecord; bindings: PolicyBinding[] }> {
    return this.i.model.allPolicies().map((policy) => ({ policy, bindings: this.liveBindings(policy.id) }));
  }

  /** Enabled policies with their bindings (bindings of removed disks are dropped on the way). */
  scheduled(): Array<{ policy: PolicyRecord; bindings: PolicyBinding[] }> {
    return this.bound().filter(({ policy }) => policy.enabled);
  }

  /**
   * Starts the snapshot of a scheduled due time and marks that due time handled for the disk, so
   * a restart does not take it again. Throws at once when the snapshot cannot start (DiskBusy...).
   */
  startScheduled(policyId: string, diskId: string, dueAt: Date, now: Date): PolicyDiskRun {
    const run = this.startRun(policyId, diskId, dueAt, now, true);
    this.markHandled(diskId, policyId, dueAt);
    return run;
  }

  /**
   * The runs on this disk the daemon died in, found from what they left: an automatic snapshot
   * of the disk in `error` with code Interrupted (the engine's recovery marks a snapshot still
   * `creating` so), created at or after the binding's last handled due time, that no history
   * event names (a run's event is written when its snapshot job ends, which a killed daemon never
   * reached). Each gets a `failed` event. If the oldest of them is the first automatic snapshot
   * made since that due time, it was the scheduled run for it: unless the schedule changed since,
   * the due time is owed again (lastDueAt moves to just before it) and the scheduler takes one
   * catch-up snapshot, as after any downtime. Event and lastDueAt change in one transaction, so a crash right after still
   * leaves the catch-up owed and the event written once. Called once per binding of every policy,
   * enabled or not (a `policy run` of a disabled one can be interrupted too), by a starting
   * scheduler, after the engine's recovery; and by `run` before its retention, which would
   * otherwise delete the snapshot that is the only trace of such a run. A second call finds the
   * event written and adds nothing.
   */
  recoverInterrupted(policyId: string, diskId: string): PolicyEvent[] {
    return this.i.model.txn(() => {
      const p = this.i.model.getPolicy(policyId);
      const b = this.i.model.getBinding(diskId);
      if (!p || !b || b.policyId !== policyId) return [];
      const since = b.lastDueAt ?? b.boundAt;
      const named = new Set(p.history.map((e) => e.snapshotId));
      const autos = this.i.catalog.snapshotsOfDisk(diskId)
        .filter((s) => s.type === 'auto' && s.createdAt >= since)
        .sort((x, y) => x.createdAt.localeCompare(y.createdAt) || x.id.localeCompare(y.id));
      const lost = autos.filter((s) => s.status === 'error' && s.error?.code === 'Interrupted' && !named.has(s.id));
      if (lost.length === 0) return [];
      const scheduledRun = b.lastDueAt !== null && autos[0] === lost[0];
      const owed = scheduledRun && b.lastDueAt! > scheduleChangedAt(p);
      const events = lost.map((s, i): PolicyEvent => ({
        // A scheduled run's due time; for a `policy run`, its own start, as that run would have recorded.
        dueAt: scheduledRun && i === 0 ? b.lastDueAt! : s.createdAt, at: s.createdAt, diskId, outcome: 'failed', snapshotId: s.id, expired: [],
        error: { code: 'Interrupted', message: `${s.error?.message ?? 'the daemon stopped while this snapshot was being created'}${owed && i === 0 ? '; the due time is taken again' : ''}` },
      }));
      for (const e of events) this.i.model.appendPolicyEvent(policyId, e);
      if (owed) this.i.model.putBinding({ ...b, lastDueAt: new Date(Date.parse(b.lastDueAt!) - 1).toISOString() });
      return events;
    });
  }

  /**
   * Brings the times this binding's due times are counted from back to `now`, when they lie in the
   * future: stamped while the wall clock was ahead, and the clock has since been set back. Due
   * times up to now count as handled; the next one by the corrected clock runs.
   */
  clampFuture(policyId: string, diskId: string, now: Date): void {
    const at = now.toISOString();
    this.i.model.txn(() => {
      const b = this.i.model.getBinding(diskId);
      if (b && b.policyId === policyId) {
        this.i.model.putBinding({
          ...b,
          boundAt: b.boundAt > at ? at : b.boundAt,
          lastDueAt: b.lastDueAt !== null && b.lastDueAt > at ? at : b.lastDueAt,
        });
      }
      const p = this.i.model.getPolicy(policyId);
      if (p && scheduleChangedAt(p) > at) this.i.model.putPolicy({ ...p, scheduleChangedAt: at });
    });
  }

  /** Records a due time that was not taken (still busy at the end of its retry window, or failing to start). */
  recordNotTaken(policyId: string, diskId: string, dueAt: Date, now: Date, outcome: 'skipped' | 'failed', err: unknown): PolicyEvent {
    const e = this.event(dueAt, now, diskId, outcome, null, [], err);
    this.i.model.txn(() => {
      this.i.model.appendPolicyEvent(policyId, e);
      const b = this.i.model.getBinding(diskId);
      if (b && b.policyId === policyId && (b.lastDueAt === null || b.lastDueAt < e.dueAt)) this.i.model.putBinding({ ...b, lastDueAt: e.dueAt });
    });
    this.i.log.warn({ policyId, diskId, dueAt: e.dueAt, outcome, code: e.error?.code }, 'scheduled snapshot not taken');
    return e;
  }

  // ---------------------------------------------------------------- internals

  private markHandled(diskId: string, policyId: string, dueAt: Date): void {
    this.i.model.txn(() => {
      const b = this.i.model.getBinding(diskId);
      if (b && b.policyId === policyId) this.i.model.putBinding({ ...b, lastDueAt: dueAt.toISOString() });
    });
  }

  private startRun(policyId: string, diskId: string, dueAt: Date, now: Date, scheduled = false): PolicyDiskRun {
    const p = this.i.model.getPolicy(policyId);
    if (!p) throw new BlocksnapError('PolicyNotFound', `no policy ${policyId}`);
    const before = this.i.catalog.snapshotsOfDisk(diskId);
    const taken = new Set(before.map((s) => s.name));
    const name = uniqueName(autoSnapshotName(p.name, now), (n) => taken.has(n));
    let job: Job;
    // The quota makes room only once the snapshot is available, before its job ends: a run that
    // does not produce one deletes nothing, and its event's `expired` stays empty.
    let evicted: string[] = [];
    try {
      job = this.engine.startSnapshot(diskId, { type: 'auto', name, description: `policy ${p.name}`, quotaEvicted: (ids) => { evicted = ids; } });
    } catch (err) {
      throw this.explainQuota(err, diskId);
    }
    const done = (async (): Promise<PolicyEvent> => {
      const end = await this.engine.waitJob(job.id);
      let e: PolicyEvent;
      if (end.state === 'succeeded') {
        const expired = await this.applyRetention(p.retention, p.timeZone, diskId, now.getTime(), job.snapshotId!);
        e = this.event(dueAt, now, diskId, 'created', job.snapshotId, [...evicted, ...expired], null);
        if (p.replicateTo) e.replication = this.startReplication(p.id, p.replicateTo, diskId);
      } else {
        e = { ...this.event(dueAt, now, diskId, 'failed', job.snapshotId, evicted, null), error: end.error };
      }
      // A scheduled run the daemon's stop cancelled is owed again, as one a crash cut off is
      // (recoverInterrupted): a clean restart must not cost a backup a SIGKILL would not.
      const owed = scheduled && end.state === 'cancelled' && this.engine.shuttingDown;
      this.i.model.txn(() => {
        if (owed && this.oweAgain(p.id, diskId, dueAt) && e.error) e.error = { ...e.error, message: `${e.error.message}; the due time is taken again at the next start` };
        this.i.model.appendPolicyEvent(p.id, e);
      });
      this.i.log.info({ policyId: p.id, diskId, jobId: job.id, snapshotId: job.snapshotId, outcome: e.outcome, expired: e.expired.length }, 'policy run');
      return e;
    })();
    const tracked = done.catch(() => undefined).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    return { job, done };
  }

  /**
   * Moves the disk's last handled due time back to just before `dueAt`, so the scheduler takes
   * it (one catch-up) when it next runs; unless a later due time was handled meanwhile or the
   * schedule changed since, which start afresh. Inside the caller's transaction. Whether it did.
   */
  private oweAgain(policyId: string, diskId: string, dueAt: Date): boolean {
    const p = this.i.model.getPolicy(policyId);
    const b = this.i.model.getBinding(diskId);
    if (!p || !b || b.policyId !== policyId || b.lastDueAt !== dueAt.toISOString() || b.lastDueAt <= scheduleChangedAt(p)) return false;
    this.i.model.putBinding({ ...b, lastDueAt: new Date(dueAt.getTime() - 1).toISOString() });
    return true;
  }

  /**
   * The engine's refusal of a full automatic quota counts the snapshots it could not delete; this
   * names them and why (clone base, export, unfinished rollback, ...) from what the policy module
   * can see, so the run's history says what to remove. Anything else passes through unchanged.
   */
  private explainQuota(err: unknown, diskId: string): unknown {
    if (toBlocksnapError(err).code !== 'SnapshotQuotaExceeded') return err;
    const disk = this.i.catalog.getDisk(diskId);
    if (!disk) return err;
    const why = (s: SnapshotRecord): true | string => {
      // The disk's own base moves to the snapshot the run takes (engine.ts, startSnapshot).
      const clone = this.i.cloneOn(s.id, diskId);
      if (clone) return `is the base of copy-on-write disk ${clone.name}`;
      if (disk.pendingRollback?.snapshotId === s.id) return `is the target of the disk's unfinished rollback (rerun it to finish, or abandon it)`;
      if (this.i.isPinned(s.id)) {
        const exported = this.engine.exports.ofSnapshot(s.id);
        return exported.length > 0 ? `is exported as ${exported.join(', ')}` : 'is being read by a running job (a clone or a replication)';
      }
      return true;
    };
    try {
      quotaEvictions(disk.name, this.i.catalog.snapshotsOfDisk(diskId), 'auto', this.i.quota(), why);
    } catch (detailed) {
      return detailed;
    }
    return err; // room was made meanwhile: the engine's own refusal stands for this attempt
  }

  /**
   * Starts replicating the disk's automatic snapshots; failures to start and the job's own end
   * are recorded on the run's event and logged, never thrown: the snapshot itself succeeded.
   */
  private startReplication(policyId: string, remote: string, diskId: string): PolicyReplication {
    const key = `${policyId}/${diskId}`;
    const running = this.replicating.get(key);
    if (running !== undefined) {
      this.i.log.info({ policyId, diskId, jobId: running }, 'the previous replication is still running; the next run replicates this snapshot');
      return { remote, jobId: null, state: 'skipped', error: null };
    }
    let job: Job;
    try {
      job = this.engine.offsite.replication.startReplicate(diskId, remote, { only: (s) => s.type === 'auto' });
    } catch (err) {
      const e = toBlocksnapError(err);
      this.i.log.warn({ policyId, diskId, remote, code: e.code, reason: e.message }, 'policy replication could not start; the next run retries');
      return { remote, jobId: null, state: 'failed', error: { code: e.code, message: e.message } };
    }
    this.replicating.set(key, job.id);
    void this.engine.waitJob(job.id).then((end) => {
      this.replicating.delete(key);
      const ok = end.state === 'succeeded';
      const r: PolicyReplication = { remote, jobId: job.id, state: ok ? 'succeeded' : 'failed', error: ok ? null : end.error };
      try {
        this.i.model.txn(() => this.i.model.endPolicyReplication(policyId, job.id, r));
      } catch {
        // The catalog is closing (daemon stop): the job's own record still tells its end.
      }
      if (ok) this.i.log.info({ policyId, diskId, remote, jobId: job.id }, 'policy replication finished');
      else this.i.log.warn({ policyId, diskId, remote, jobId: job.id, code: end.error?.code, reason: end.error?.message }, 'policy replication failed; the next run retries');
    });
    return { remote, jobId: job.id, state: 'running', error: null };
  }

  /**
   * Resolves once every run started so far has ended: its retention deleted what it could before
   * the stop, and its event is written. For the engine's close, after its jobs ended.
   */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  /**
   * Deletes the disk's automatic snapshots that retention lets go, and its failed automatic
   * snapshots (the run that just succeeded supersedes them; their errors stay in the history).
   * Never a manual snapshot, never a group member, never the base of another COW disk; yet those
   * two count towards the keep rules like any automatic snapshot (a pinned one still is the
   * newest, or its day's), so that each pin does not keep one more snapshot than the rules say.
   * A COW disk's own base is its newest, kept as such. A delete refused now (a clone reads it,
   * the disk got busy) is left for the next run.
   */
  private async applyRetention(r: Retention, timeZone: string, diskId: string, nowMs: number, newest: string): Promise<string[]> {
    const autos = this.i.catalog.snapshotsOfDisk(diskId).filter((s) => s.type === 'auto');
    const held = (s: SnapshotRecord): boolean => Boolean(s.groupId) || this.i.cloneOn(s.id, diskId) !== undefined;
    const expired = new Set(expiredSnapshots(autos.filter((s) => s.status === 'available'), r, nowMs, timeZone));
    for (const s of autos) if (held(s)) expired.delete(s.id);
    expired.delete(newest); // a retention shorter than the run itself must not eat what it just made
    for (const s of autos) if (s.status === 'error' && !held(s)) expired.add(s.id);
    const { deleted, refused } = await deleteInBatches(this.i, diskId, [...expired]);
    const byCode = new Map<string, string[]>();
    for (const r of refused) byCode.set(r.error.code, [...(byCode.get(r.error.code) ?? []), r.id]);
    for (const [code, snapshotIds] of byCode) {
      this.i.log.warn({ diskId, code, snapshotIds }, 'retention could not delete snapshots now; the next run retries');
    }
    return deleted;
  }

  private event(dueAt: Date, now: Date, diskId: string, outcome: PolicyEvent['outcome'], snapshotId: string | null, expired: string[], err: unknown): PolicyEvent {
    const e = err === null ? null : toBlocksnapError(err);
    return {
      dueAt: dueAt.toISOString(), at: now.toISOString(), diskId, outcome, snapshotId, expired,
      error: e ? { code: e.code, message: e.message } : null,
    };
  }

  /** Bindings whose disk still exists; those of removed disks are deleted here. */
  private liveBindings(policyId: string): PolicyBinding[] {
    const all = this.i.model.bindingsOf(policyId);
    const gone = all.filter((b) => !this.i.catalog.getDisk(b.diskId));
    if (gone.length > 0) this.i.model.txn(() => { for (const b of gone) this.i.model.deleteBinding(b.diskId); });
    return all.filter((b) => !gone.includes(b));
  }

  /** The remote must exist when it is named (RemoteNotFound); null or "" names none. */
  private checkRemote(name: string | null | undefined): string | null {
    if (name === undefined || name === null || name === '') return null;
    return this.engine.offsite.replication.getRemote(name).name;
  }

  private checkName(name: unknown, selfId: string | null): string {
    const n = validateName('policy', name, POLICY_NAME_MAX);
    if (this.i.model.allPolicies().some((p) => p.name === n && p.id !== selfId)) {
      throw new BlocksnapError('NameTaken', `a policy named ${JSON.stringify(n)} exists already`);
    }
    return n;
  }

  private resolve(ref: string): PolicyRecord {
    return resolveIdOrName(ref, { prefix: 'p', noun: 'policy', notFound: 'PolicyNotFound' },
      (id) => this.i.model.getPolicy(id), () => this.i.model.allPolicies());
  }

  private view(p: PolicyRecord): Policy {
    const diskIds = this.i.model.bindingsOf(p.id).filter((b) => this.i.catalog.getDisk(b.diskId)).map((b) => b.diskId);
    return { ...p, replicateTo: p.replicateTo ?? null, scheduleChangedAt: scheduleChangedAt(p), diskIds };
  }
}
