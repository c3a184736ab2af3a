/**
 * Jobs: every long operation (JOB_KINDS in types.ts) runs as a job with an id,
 * progress and a cancel switch. Records are persisted at start and at the end, so `job show`
 * survives a restart and a job that was running when the daemon died reads `interrupted`.
 * A job whose whole effect is one catalog transaction may record its success in that same
 * transaction (JobControl.succeededWith), so that no crash can leave the effect committed and the
 * job `interrupted`. Progress ticks stay in memory (they change several times a second); every
 * PROGRESS_RECORD_MS the running jobs are written in one transaction, progress and all, so that
 * an interrupted job says how far it got and when it was last seen running.
 * Progress events go out at most every PROGRESS_EVENT_MS per job, whatever the job's own pace
 * (gc ticks once a block), and at once as a job enters a phase: every one is sent to each client
 * following the job. The last value
 * held back is sent before the job's end, and a job that succeeded ends with its progress whole.
 * Every job's end is logged once, with its id, kind, what it worked on and, for one that failed or
 * was cancelled, its error: the reply goes to one client, which may be gone, while the log is
 * what the operator reads later (a snapshot that failed NoSpace, a raw rollback a stop cut short).
 */
import { EventEmitter } from 'node:events';
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import { JOB_HISTORY_LIMIT } from '../catalog/schema';
import type { Job, JobKind, JobPhase } from './types';

/** Where job ends are logged (the engine's logger). */
export interface JobLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface JobControl {
  readonly job: Job;
  readonly signal: AbortSignal;
  /** `phase`: the pass the job is in, for a job of two passes (Job.phase); kept until another is given. */
  progress(doneBytes: number, totalBytes: number, phase?: JobPhase): void;
  /**
   * Call inside the catalog transaction that commits the job's effect: records in it that the
   * job succeeded with `result`, which the job then returns (its end is recorded again, as for
   * every job, once it returns). A crash after that commit leaves the job `succeeded`: read as
   * `interrupted`, it would invite a rerun, and a rerun of a rollback throws away what was
   * written since.
   */
  succeededWith(result: unknown): void;
  /**
   * Records the snapshot the job works on once it is known (an import learns it from its
   * stream's header or its remote's manifest), written at once so that an import cancelled, or
   * cut off by a crash, still says which snapshot it carried.
   */
  recordSnapshot(snapshotId: string): void;
}

interface Running {
  job: Job;
  abort: AbortController;
  done: Promise<Job>;
  /** Its success is committed (succeededWith): its record must not read `running` again. */
  settled: boolean;
  /** Cancelled by the daemon's shutdown, not by a user: its error says so. */
  stoppedByShutdown: boolean;
}

/** How often a running job's progress is written to the catalog. */
export const PROGRESS_RECORD_MS = 5_000;

/** The shortest time between two progress events of one job (docs/protocol.md: about 4 a second). */
export const PROGRESS_EVENT_MS = 250;

/**
 * A succeeded job did all its work: its count may stop short of an estimated total (an import's
 * stream length counts framing its data bytes do not), which would read 99 % for a finished job.
 */
/**
 * A cancel as the job reports it, whatever request or wait it stopped first (an S3 GET, a retry's
 * back-off): "the job was cancelled", as other kinds say, then `left`, what the job left behind.
 * Other errors, and a Cancelled the job's own signal did not cause, pass unchanged.
 */
export function asJobCancel(err: unknown, signal: AbortSignal, left = ''): unknown {
  if (!signal.aborted || !(err instanceof BlocksnapError) || err.code !== 'Cancelled') return err;
  return new BlocksnapError('Cancelled', `the job was cancelled${left}`, err.details);
}

function wholeProgress(job: Job): Pick<Job, 'doneBytes'> {
  return { doneBytes: Math.max(job.doneBytes, job.totalBytes) };
}

export class JobRunner {
  private readonly running = new Map<string, Running>();
  private recordTimer: NodeJS.Timeout | null = null;
  /**
   * The finished jobs the catalog keeps, oldest first: the history is trimmed as each job ends,
   * not only at a start, since a policy over many disks adds a job per disk per run.
   */
  private readonly history: string[] = [];
  /**
   * Ended jobs whose end the catalog could not take (a read-only, full or failing data dir):
   * what `job show`, `job list` and waiters are told until a later write gets it in. Without
   * them a job's stored record would say `running` forever, or a job never stored would be
   * JobNotFound, and the error that ended it would be lost. At most historyLimit, oldest dropped.
   */
  private readonly unwrittenEnds = new Map<string, Job>();

  constructor(private readonly catalog: Catalog, private readonly events: EventEmitter, private readonly historyLimit = JOB_HISTORY_LIMIT,
    private readonly log: JobLogger | null = null) {}

  /** Marks the jobs a crash left `running` as interrupted, trims the history, and returns them. */
  recover(): Job[] {
    const interrupted: Job[] = [];
    const all = this.catalog.allJobs();
    this.catalog.txn(() => {
      for (const j of all) {
        if (j.state !== 'running') continue;
        interrupted.push(j);
        // Last seen running then: the daemon stopped within PROGRESS_RECORD_MS of it. The time of
        // this start would add however long the daemon was down.
        this.catalog.putJob({
          ...j, state: 'interrupted', finishedAt: j.progressAt ?? j.startedAt,
          error: { code: 'Interrupted', message: 'the daemon stopped while this job was running' },
        });
      }
      const finished = all.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
      const cut = Math.max(0, finished.length - this.historyLimit);
      for (const j of finished.slice(0, cut)) this.catalog.deleteJob(j.id);
      this.history.splice(0, this.history.length, ...finished.slice(cut).map((j) => j.id));
    });
    return interrupted;
  }

  start(id: string, kind: JobKind, refs: Pick<Job, 'diskId' | 'snapshotId' | 'target'>, run: (ctl: JobControl) => Promise<unknown>): Job {
    const job: Job = {
      id, kind, state: 'running', ...refs, doneBytes: 0, totalBytes: 0,
      progressUnit: kind === 'verify' || kind === 'gc' || kind === 'remote-gc' || kind === 'remote-verify' ? 'blocks' : 'bytes',
      startedAt: new Date().toISOString(), finishedAt: null, result: null, error: null,
    };
    try {
      this.catalog.txn(() => this.catalog.putJob(job));
    } catch {
      // The caller holds locks (and may have written records) that only `run` gives back: refused
      // here, a snapshot's disk would stay busy until a restart. So whatever kept the start from
      // being written (a full or read-only data dir, or a fault), the job runs unrecorded; its own
      // catalog writes fail the same way, and its end is recorded when that can be written.
    }
    const abort = new AbortController();
    const entry: Running = { job, abort, settled: false, stoppedByShutdown: false, done: Promise.resolve(job) };
    let lastEventAt = -Infinity;
    /** Set while a progress value is held back: sends it once PROGRESS_EVENT_MS have passed. */
    let heldBack: NodeJS.Timeout | null = null;
    const sendProgress = (): void => {
      if (heldBack !== null) clearTimeout(heldBack);
      heldBack = null;
      lastEventAt = performance.now();
      this.events.emit('job', { ...job });
    };
    const ctl: JobControl = {
      job, signal: abort.signal,
      progress: (done, total, phase) => {
        const newPhase = phase !== undefined && phase !== job.phase;
        job.doneBytes = done;
        job.totalBytes = total;
        if (phase !== undefined) job.phase = phase;
        if (job.state !== 'running') return;
        // Sent at once, not held back behind the pace: a phase a later value replaced before its
        // turn would never reach a follower, who may be deciding on a cancel by it.
        if (newPhase) return sendProgress();
        if (heldBack !== null) return; // the held-back send takes the new value
        const wait = lastEventAt + PROGRESS_EVENT_MS - performance.now();
        if (wait <= 0) sendProgress();
        else heldBack = setTimeout(sendProgress, wait);
      },
      succeededWith: (result) => {
        entry.settled = true;
        this.catalog.putJob({ ...job, ...wholeProgress(job), state: 'succeeded', result, error: null, finishedAt: new Date().toISOString() });
      },
      recordSnapshot: (snapshotId) => {
        job.snapshotId = snapshotId;
        try {
          this.catalog.txn(() => this.catalog.putJob(job));
        } catch {
          // As at the start: the record in memory answers, and the next progress tick or the end writes it.
        }
        this.events.emit('job', { ...job });
      },
    };
    const done = (async (): Promise<Job> => {
      let result: unknown;
      let error: BlocksnapError | null = null;
      try {
        result = await run(ctl);
      } catch (err) {
        error = toBlocksnapError(err);
      }
      // A follower sees how far the job got before it sees the end.
      if (heldBack !== null) sendProgress();
      if (error === null) {
        job.result = result;
        job.state = 'succeeded';
        Object.assign(job, wholeProgress(job));
      } else {
        job.state = error.code === 'Cancelled' ? 'cancelled' : 'failed';
        const message = error.code === 'Cancelled' && entry.stoppedByShutdown ? `the daemon was shutting down, which cancelled the job (${error.message})` : error.message;
        job.error = { code: error.code, message };
      }
      job.finishedAt = new Date().toISOString();
      this.running.delete(id);
      if (this.running.size === 0 && this.recordTimer) {
        clearInterval(this.recordTimer);
        this.recordTimer = null;
      }
      this.unwrittenEnds.set(id, { ...job });
      this.writeEnds();
      this.logEnd(job);
      this.events.emit('job', { ...job });
      return { ...job };
    })();
    entry.done = done;
    this.running.set(id, entry);
    this.recordTimer ??= setInterval(() => this.recordRunning(), PROGRESS_RECORD_MS).unref();
    this.events.emit('job', { ...job });
    return { ...job };
  }

  private logEnd(job: Job): void {
    if (this.log === null) return;
    const fields = {
      jobId: job.id, kind: job.kind, state: job.state, diskId: job.diskId, snapshotId: job.snapshotId, target: job.target,
      ms: Date.parse(job.finishedAt!) - Date.parse(job.startedAt),
    };
    if (job.error === null) this.log.info(fields, `job ${job.state}`);
    else this.log[job.state === 'failed' ? 'error' : 'warn']({ ...fields, code: job.error.code, reason: job.error.message }, `job ${job.state}`);
  }

  /**
   * Writes the ends not yet written, trimming the history by as many, in one transaction. One that
   * fails (the catalog closing under a crash-stop, a data dir gone read-only or full) leaves them
   * in memory, answering for the catalog, and the next end or progress tick tries again.
   */
  private writeEnds(): void {
    const ends = [...this.unwrittenEnds.values()];
    try {
      const cut = Math.max(0, this.history.length + ends.length - this.historyLimit);
      this.catalog.txn(() => {
        for (const j of ends) this.catalog.putJob(j);
        for (const old of this.history.slice(0, cut)) this.catalog.deleteJob(old);
      });
      this.history.splice(0, cut);
      for (const j of ends) {
        this.history.push(j.id);
        this.unwrittenEnds.delete(j.id);
      }
    } catch {
      while (this.unwrittenEnds.size > this.historyLimit) this.unwrittenEnds.delete(this.unwrittenEnds.keys().next().value!);
    }
  }

  /** Writes every running job as it stands now (progressAt: now), and the ends not yet written. */
  private recordRunning(): void {
    if (this.unwrittenEnds.size > 0) this.writeEnds();
    const live = [...this.running.values()].filter((r) => !r.settled);
    if (live.length === 0) return;
    const at = new Date().toISOString();
    try {
      this.catalog.txn(() => {
        for (const r of live) {
          r.job.progressAt = at;
          this.catalog.putJob(r.job);
        }
      });
    } catch {
      // A full data dir or a closing catalog: the progress stays in memory, as a job's end is
      // written when it can be.
    }
  }

  get(id: string): Job {
    const r = this.running.get(id);
    if (r) return { ...r.job };
    const ended = this.unwrittenEnds.get(id);
    if (ended) return { ...ended };
    const j = this.catalog.getJob(id);
    if (!j) throw new BlocksnapError('JobNotFound', `no job ${JSON.stringify(id)}`);
    return j;
  }

  list(): Job[] {
    const stored = this.catalog.allJobs();
    const ids = new Set(stored.map((j) => j.id));
    const inMemory = [...[...this.running.values()].map((r) => r.job), ...this.unwrittenEnds.values()];
    const unrecorded = inMemory.filter((j) => !ids.has(j.id)); // see start() and writeEnds()
    return [...stored.map((j) => this.running.get(j.id)?.job ?? this.unwrittenEnds.get(j.id) ?? j), ...unrecorded]
      .map((j) => ({ ...j })).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  cancel(id: string): Job {
    const r = this.running.get(id);
    if (!r) return this.get(id);
    r.abort.abort();
    return { ...r.job };
  }

  async wait(id: string): Promise<Job> {
    const r = this.running.get(id);
    return r ? r.done : this.get(id);
  }

  runningCount(): number { return this.running.size; }

  /** The job while it runs (live progress), else undefined; never reads the catalog. */
  ifRunning(id: string): Job | undefined {
    const r = this.running.get(id);
    return r ? { ...r.job } : undefined;
  }

  /** Cancels every running job and waits until each has stopped at a safe point. */
  async shutdown(): Promise<void> {
    const all = [...this.running.values()];
    for (const r of all) {
      if (!r.abort.signal.aborted) r.stoppedByShutdown = true;
      r.abort.abort();
    }
    await Promise.all(all.map((r) => r.done));
  }
}
