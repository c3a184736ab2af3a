/**
 * Following a long job from the CLI: a progress bar on a terminal, and a deliberate answer to
 * Ctrl-C. Disconnecting never cancels a job in the daemon, so the CLI must decide:
 *  - on a terminal, it asks: cancel the job, detach (leave it running), or keep waiting;
 *  - without one (scripts, CI), it cancels, because an interrupted script usually wants the work
 *    stopped, unless --detach-on-interrupt says to leave the job running.
 * A second Ctrl-C while a cancel is pending stops waiting for it.
 */
import { createInterface, type Interface } from 'node:readline';
import { BlocksnapError, type ErrorCode } from '../errors';
import type { DaemonClient } from '../daemon/client';
import type { ProgressEvent } from '../daemon/protocol/messages';
import type { Job } from '../engine/types';
import { EXIT } from './exit-status';
import { reportError } from './output';
import { ProgressBar } from './progress';

export interface FollowOptions {
  /** Shown before the bar ("snapshot vm1"). */
  label: string;
  detachOnInterrupt: boolean;
  /** Progress goes to stderr; off when it is not a terminal. */
  showProgress?: boolean;
  /** Whether Ctrl-C may ask a question; needs a terminal on both stdin and stderr. */
  interactive?: boolean;
  /** Ctrl-C came after the job was asked for and before this wait (see noteEarlyInterrupt). */
  interruptedBefore?: () => boolean;
  /** What cancelling leaves behind, where that is more than nothing (a raw rollback): said before the choice. */
  cancelNote?: string;
}

/**
 * Notes Ctrl-C from now until a wait takes over. Between asking for a job and following it no
 * SIGINT listener is installed, and the signal's default action would end the command without
 * cancelling the job or saying so; a stream's first bytes can already be out by then.
 */
export function noteEarlyInterrupt(): { interrupted: () => boolean; dispose: () => void } {
  let seen = false;
  const onInterrupt = (): void => { seen = true; };
  process.on('SIGINT', onInterrupt);
  return { interrupted: () => seen, dispose: () => { process.off('SIGINT', onInterrupt); } };
}

/** The wait ended because of Ctrl-C: the job(s) were cancelled, or left running (detached). */
export class InterruptedWait extends Error {
  readonly jobs: Job[];
  readonly cancelled: boolean;

  /** `message` replaces the default one, which names the jobs only. */
  constructor(jobs: Job | Job[], cancelled: boolean, message?: string) {
    const list = Array.isArray(jobs) ? jobs : [jobs];
    const ids = list.map((j) => j.id).join(', ');
    super(message ?? (list.length === 1
      ? (cancelled ? `job ${ids} was cancelled` : `detached from job ${ids}; it keeps running in the daemon`)
      : (cancelled ? `jobs ${ids} were cancelled` : `detached from jobs ${ids || '(none started yet)'}; they keep running in the daemon`)));
    this.name = 'InterruptedWait';
    this.jobs = list;
    this.cancelled = cancelled;
  }
}

/**
 * Prints how a wait interrupted by Ctrl-C ended, in the mode's shape, and returns the exit status
 * (130). `to` takes the JSON, as reportError's does; human text goes to stderr.
 */
export function reportInterrupted(err: InterruptedWait, json: boolean, to: NodeJS.WritableStream = process.stdout): number {
  const one = err.jobs.length === 1 ? err.jobs[0]! : null;
  if (json) {
    if (err.cancelled) reportError(new BlocksnapError('Cancelled', err.message), true, to);
    else to.write(`${JSON.stringify(one ?? err.jobs, null, 2)}\n`);
  } else {
    const see = one !== null ? `blocksnap job show ${one.id}` : 'blocksnap job list';
    process.stderr.write(`blocksnap: ${err.message}${err.cancelled ? '' : `; see: ${see}`}\n`);
  }
  return EXIT.interrupted;
}

/** The error a job that did not succeed ended with. */
export function jobError(job: Job): BlocksnapError {
  if (job.error) return new BlocksnapError(job.error.code as ErrorCode, job.error.message, { jobId: job.id });
  if (job.state === 'cancelled') return new BlocksnapError('Cancelled', `job ${job.id} was cancelled`, { jobId: job.id });
  return new BlocksnapError('Internal', `job ${job.id} ended ${job.state}`, { jobId: job.id });
}

type Answer = 'cancel' | 'detach' | 'wait';

/** The question Ctrl-C asks on a terminal. */
export function interruptQuestion(jobId: string, cancelNote?: string): string {
  return question(`Job ${jobId} is`, cancelNote);
}

function question(subject: string, cancelNote?: string): string {
  const note = cancelNote === undefined ? '' : `\n${cancelNote}\n`;
  return `\n${subject} still running.${note ? note : ' '}[c]ancel it, [d]etach and leave it running, or keep [w]aiting? [w] `;
}

interface InterruptOptions {
  interactive: boolean;
  detachOnInterrupt: boolean;
  cancelNote?: string | undefined;
  bar: ProgressBar | null;
  /** The question's subject ("Job j-… is"). */
  subject: string;
  /** Said when cancelling ("job j-…"). */
  cancelling: () => string;
  /** The jobs to cancel: those known to be running. */
  running: () => Job[];
}

/**
 * The answer to Ctrl-C while jobs run, for one job (followJob) or the jobs a call starts
 * (followCall): ask on a terminal, else cancel or, with --detach-on-interrupt, detach; a second
 * Ctrl-C while a cancel is pending stops waiting.
 */
class InterruptWatch {
  cancelRequested = false;
  readonly detached: Promise<'detached'>;
  private prompt: Interface | null = null;
  private stopWaiting!: () => void;

  constructor(private readonly client: DaemonClient, private readonly o: InterruptOptions) {
    this.detached = new Promise<'detached'>((resolve) => {
      this.stopWaiting = () => resolve('detached');
    });
    process.on('SIGINT', this.onInterrupt);
  }

  get prompting(): boolean { return this.prompt !== null; }

  readonly onInterrupt = (): void => {
    if (this.prompt !== null) return;
    if (this.cancelRequested) this.stopWaiting();
    else if (this.o.interactive) this.ask();
    else if (this.o.detachOnInterrupt) this.stopWaiting();
    else this.cancel();
  };

  /** A job that starts after the cancel was asked for is cancelled as it shows up. */
  joined(job: Job): void {
    if (this.cancelRequested && job.state === 'running') this.cancelJob(job);
  }

  dispose(): void {
    process.off('SIGINT', this.onInterrupt);
    this.prompt?.close();
    this.prompt = null;
  }

  private cancel(): void {
    this.cancelRequested = true;
    // Asked, the note was in the question; cancelled without asking, it is said now.
    if (!this.o.interactive && this.o.cancelNote !== undefined) process.stderr.write(`${this.o.cancelNote}\n`);
    process.stderr.write(`Cancelling ${this.o.cancelling()}; press Ctrl-C again to stop waiting for it.\n`);
    for (const j of this.o.running()) this.cancelJob(j);
  }

  private cancelJob(job: Job): void {
    this.client.call('job.cancel', { job: job.id }).catch(() => undefined);
  }

  private ask(): void {
    this.o.bar?.clear();
    const prompt = createInterface({ input: process.stdin, output: process.stderr });
    this.prompt = prompt;
    const done = (answer: Answer): void => {
      prompt.close();
      this.prompt = null;
      if (answer === 'cancel') this.cancel();
      else if (answer === 'detach') this.stopWaiting();
      else this.o.bar?.redraw();
    };
    // Ctrl-C at the prompt means "let me go": detach, which loses no work.
    prompt.on('SIGINT', () => done('detach'));
    prompt.question(question(this.o.subject, this.o.cancelNote), (a) => {
      const t = a.trim().toLowerCase();
      done(t.startsWith('c') ? 'cancel' : t.startsWith('d') ? 'detach' : 'wait');
    });
  }
}

/** Waits for `job` to end; returns it when it succeeded, throws its error otherwise. */
export async function followJob(client: DaemonClient, job: Job, o: FollowOptions): Promise<Job> {
  const showProgress = o.showProgress ?? process.stderr.isTTY === true;
  const interactive = o.interactive ?? (process.stdin.isTTY === true && process.stderr.isTTY === true);
  const bar = showProgress ? new ProgressBar(process.stderr, o.label) : null;
  let latest = job;
  const watch = new InterruptWatch(client, {
    interactive, detachOnInterrupt: o.detachOnInterrupt, cancelNote: o.cancelNote, bar,
    subject: `Job ${job.id} is`, cancelling: () => `job ${job.id}`, running: () => [job],
  });
  if (o.interruptedBefore?.() === true) watch.onInterrupt();
  try {
    const outcome = await Promise.race([
      client.waitJob(job.id, (j) => {
        latest = j;
        if (!watch.prompting) bar?.update(j.doneBytes, j.totalBytes, Date.now(), j.progressUnit);
      }),
      watch.detached,
    ]);
    if (outcome === 'detached') throw new InterruptedWait(latest, false);
    if (outcome.state === 'succeeded') return outcome;
    if (watch.cancelRequested && outcome.state === 'cancelled') throw new InterruptedWait(outcome, true);
    throw jobError(outcome);
  } finally {
    watch.dispose();
    bar?.clear();
  }
}

/** How a call followed by followCall ended. */
export interface FollowedCall<T> {
  result: T;
  /** Every job the call started, as it ended. */
  jobs: Job[];
  /** Ctrl-C asked for its jobs to be cancelled (some may have ended before the cancel landed). */
  cancelRequested: boolean;
}

/**
 * Makes a call that starts several jobs and answers once they all ended (group.create and
 * group.rollback with wait, policy.run), answering Ctrl-C as followJob does for all of them. The
 * daemon sends each job as it starts (CallContext.announce): that is how their ids are known
 * before the answer. Throws InterruptedWait when detached; a cancel is left to the caller to
 * report, as only it knows what the cancelled jobs left behind.
 */
export async function followCall<T>(client: DaemonClient, method: string, params: Record<string, unknown>, o: FollowOptions): Promise<FollowedCall<T>> {
  const showProgress = o.showProgress ?? process.stderr.isTTY === true;
  const interactive = o.interactive ?? (process.stdin.isTTY === true && process.stderr.isTTY === true);
  const bar = showProgress ? new ProgressBar(process.stderr, o.label) : null;
  const jobs = new Map<string, Job>();
  const ids = (): string => [...jobs.keys()].join(', ');
  const watch = new InterruptWatch(client, {
    interactive, detachOnInterrupt: o.detachOnInterrupt, cancelNote: o.cancelNote, bar,
    subject: `${o.label} is`,
    cancelling: () => `${o.label} (${jobs.size === 0 ? 'its jobs as they start' : `job${jobs.size === 1 ? '' : 's'} ${ids()}`})`,
    running: () => [...jobs.values()].filter((j) => j.state === 'running'),
  });
  const onProgress = (ev: ProgressEvent): void => {
    const known = jobs.has(ev.jobId);
    jobs.set(ev.jobId, ev.job);
    if (!known) watch.joined(ev.job);
    if (watch.prompting || bar === null) return;
    let done = 0;
    let total = 0;
    for (const j of jobs.values()) { done += j.doneBytes; total += j.totalBytes; }
    bar.update(done, total, Date.now(), ev.job.progressUnit);
  };
  client.on('progress', onProgress);
  if (o.interruptedBefore?.() === true) watch.onInterrupt();
  try {
    const outcome = await Promise.race([client.call<T>(method, params), watch.detached]);
    if (outcome === 'detached') throw new InterruptedWait([...jobs.values()], false, `detached from ${o.label}; ${jobs.size === 0 ? 'the jobs it started keep' : `job${jobs.size === 1 ? '' : 's'} ${ids()} keep${jobs.size === 1 ? 's' : ''}`} running in the daemon`);
    return { result: outcome, jobs: [...jobs.values()], cancelRequested: watch.cancelRequested };
  } finally {
    client.off('progress', onProgress);
    watch.dispose();
    bar?.clear();
  }
}
