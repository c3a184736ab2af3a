/**
 * Following a long job from the CLI: a progress bar on a terminal, and a deliberate answer to
 * Ctrl-C. Disconnecting never cancels a job in the daemon, so the CLI must decide:
 *  - on a terminal, it asks: cancel the job, detach (leave it running), or keep waiting;
 *  - without one (scripts, CI), it cancels, because an interrupted script usually wants the work
 *    stopped, unless --detach-on-interrupt says to leave the job running.
 * A second Ctrl-C while a cancel is pending stops waiting for it.
 * SIGTERM (timeout(1), systemd stopping a unit, kill) comes from a program, not from someone at
 * the terminal: it is answered as Ctrl-C without a terminal. SIGHUP means the terminal went away,
 * which is no wish to lose the work: it detaches (a stream, which ends with the connection, is
 * cancelled). Either way the CLI says which, and exits 128 + the signal's number.
 */
import { constants } from 'node:os';
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
  /** The signal that came after the job was asked for and before this wait, if any (see noteEarlyInterrupt). */
  interruptedBefore?: () => WaitSignal | null;
  /** The job ends with this connection (a stream): a signal that would detach cancels it instead. */
  endsWithConnection?: boolean;
  /** What cancelling leaves behind, where that is more than nothing (a raw rollback): said before the choice. */
  cancelNote?: string;
}

/** The signals a wait answers (see the top of this file). */
export const WAIT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type WaitSignal = typeof WAIT_SIGNALS[number];

/**
 * Notes the wait signals from now until a wait takes over. Between asking for a job and following
 * it no listener is installed, and the signal's default action would end the command without
 * cancelling the job or saying so; a stream's first bytes can already be out by then.
 */
export function noteEarlyInterrupt(): { interrupted: () => WaitSignal | null; dispose: () => void } {
  let seen: WaitSignal | null = null;
  const listeners = WAIT_SIGNALS.map((sig) => [sig, (): void => { seen = sig; }] as const);
  for (const [sig, l] of listeners) process.on(sig, l);
  return { interrupted: () => seen, dispose: () => { for (const [sig, l] of listeners) process.off(sig, l); } };
}

/** " on SIGTERM" for the signals other than Ctrl-C, whose messages have always gone without. */
function onSignalText(signal: WaitSignal): string {
  return signal === 'SIGINT' ? '' : ` on ${signal}`;
}

/** The wait ended because of a signal (Ctrl-C, SIGTERM, SIGHUP): the job(s) were cancelled, or left running (detached). */
export class InterruptedWait extends Error {
  readonly jobs: Job[];
  readonly cancelled: boolean;
  readonly signal: WaitSignal;

  /** `message` replaces the default one, which names the jobs only. */
  constructor(jobs: Job | Job[], cancelled: boolean, message?: string, signal: WaitSignal = 'SIGINT') {
    const list = Array.isArray(jobs) ? jobs : [jobs];
    const ids = list.map((j) => j.id).join(', ');
    const on = onSignalText(signal);
    super(message ?? (list.length === 1
      ? (cancelled ? `job ${ids} was cancelled${on}` : `detached from job ${ids}${on}; it keeps running in the daemon`)
      : (cancelled ? `jobs ${ids} were cancelled${on}` : `detached from jobs ${ids || '(none started yet)'}${on}; they keep running in the daemon`)));
    this.name = 'InterruptedWait';
    this.jobs = list;
    this.cancelled = cancelled;
    this.signal = signal;
  }
}

/** 128 + the signal's number, as a shell reports a command the signal ended: 130 for Ctrl-C. */
export function interruptedStatus(signal: WaitSignal): number {
  return signal === 'SIGINT' ? EXIT.interrupted : 128 + constants.signals[signal];
}

/**
 * Prints how a wait interrupted by a signal ended, in the mode's shape, and returns the exit
 * status (interruptedStatus). `to` takes the JSON, as reportError's does; human text goes to stderr.
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
  return interruptedStatus(err.signal);
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
  endsWithConnection: boolean;
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
 * The answer to a signal while jobs run, for one job (followJob) or the jobs a call starts
 * (followCall): Ctrl-C asks on a terminal, else cancels or, with --detach-on-interrupt, detaches;
 * SIGTERM never asks; SIGHUP detaches. A second signal while a cancel is pending stops waiting.
 */
class InterruptWatch {
  cancelRequested = false;
  /** The signal that decided how the wait ends (cancel or detach); SIGINT until one does. */
  signal: WaitSignal = 'SIGINT';
  readonly detached: Promise<'detached'>;
  private prompt: Interface | null = null;
  private stopWaiting!: () => void;
  private readonly listeners = WAIT_SIGNALS.map((sig) => [sig, (): void => this.onSignal(sig)] as const);

  constructor(private readonly client: DaemonClient, private readonly o: InterruptOptions) {
    this.detached = new Promise<'detached'>((resolve) => {
      this.stopWaiting = () => resolve('detached');
    });
    for (const [sig, l] of this.listeners) process.on(sig, l);
  }

  get prompting(): boolean { return this.prompt !== null; }

  readonly onSignal = (signal: WaitSignal): void => {
    if (signal === 'SIGINT') {
      if (this.prompt !== null) return; // the prompt takes Ctrl-C itself
      if (this.cancelRequested) this.detach(signal);
      else if (this.o.interactive) this.ask();
      else if (this.o.detachOnInterrupt) this.detach(signal);
      else this.cancel(signal);
      return;
    }
    // Sent by a program, or the terminal is gone: there is no one to ask.
    if (this.prompt !== null) {
      this.closePrompt();
      process.stderr.write('\n');
    }
    if (signal === 'SIGHUP') {
      // What is said now goes to a terminal that is gone: a failed write must not end the CLI otherwise.
      process.stderr.on('error', () => undefined);
      if (!this.o.endsWithConnection && !this.cancelRequested) {
        this.detach(signal);
        return;
      }
    }
    if (this.cancelRequested || (this.o.detachOnInterrupt && !this.o.endsWithConnection)) this.detach(signal);
    else this.cancel(signal);
  };

  /** A job that starts after the cancel was asked for is cancelled as it shows up. */
  joined(job: Job): void {
    if (this.cancelRequested && job.state === 'running') this.cancelJob(job);
  }

  dispose(): void {
    for (const [sig, l] of this.listeners) process.off(sig, l);
    this.closePrompt();
  }

  /** Takes the question away unanswered. */
  private closePrompt(): void {
    const prompt = this.prompt;
    this.prompt = null;
    prompt?.close();
  }

  private detach(signal: WaitSignal): void {
    this.signal = signal;
    this.stopWaiting();
  }

  private cancel(signal: WaitSignal): void {
    this.cancelRequested = true;
    this.signal = signal;
    // Asked, the note was in the question; cancelled without asking, it is said now.
    if (signal !== 'SIGINT' || !this.o.interactive) {
      this.o.bar?.clear();
      if (this.o.cancelNote !== undefined) process.stderr.write(`${this.o.cancelNote}\n`);
    }
    const again = signal === 'SIGINT' ? 'press Ctrl-C again to stop waiting for it' : 'a second signal stops waiting for it';
    process.stderr.write(`Cancelling ${this.o.cancelling()}${onSignalText(signal)}; ${again}.\n`);
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
      if (this.prompt !== prompt) return; // answered already, or taken away (closePrompt)
      this.closePrompt();
      if (answer === 'cancel') this.cancel('SIGINT');
      else if (answer === 'detach') this.detach('SIGINT');
      else this.o.bar?.redraw();
    };
    // Ctrl-C at the prompt means "let me go": detach, which loses no work.
    prompt.on('SIGINT', () => done('detach'));
    // Ctrl-D (end of input) gives no answer: the default, keep waiting; the next Ctrl-C asks again.
    prompt.on('close', () => {
      if (this.prompt !== prompt) return;
      process.stderr.write('\n'); // the cursor is still after the question
      done('wait');
    });
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
    interactive, detachOnInterrupt: o.detachOnInterrupt, endsWithConnection: o.endsWithConnection === true, cancelNote: o.cancelNote, bar,
    subject: `Job ${job.id} is`, cancelling: () => `job ${job.id}`, running: () => [job],
  });
  const before = o.interruptedBefore?.() ?? null;
  if (before !== null) watch.onSignal(before);
  try {
    const outcome = await Promise.race([
      client.waitJob(job.id, (j) => {
        latest = j;
        if (!watch.prompting) bar?.update(j.doneBytes, j.totalBytes, Date.now(), j.progressUnit, j.phase);
      }).catch((err: unknown) => { throw lostWhileWaiting(err, [job]); }),
      watch.detached,
    ]);
    if (outcome === 'detached') throw new InterruptedWait(latest, false, undefined, watch.signal);
    if (outcome.state === 'succeeded') return outcome;
    if (watch.cancelRequested && outcome.state === 'cancelled') throw new InterruptedWait(outcome, true, cancelledMessage(outcome, watch.signal), watch.signal);
    throw jobError(outcome);
  } finally {
    watch.dispose();
    bar?.clear();
  }
}

/**
 * The message of a job this wait cancelled, with what the job's error adds to the cancel itself:
 * a rollback's says what it left the disk in (as it was, or partly rolled back), which the
 * default message would drop. undefined (the default message) when it adds nothing.
 */
function cancelledMessage(job: Job, signal: WaitSignal): string | undefined {
  const added = /^the job was cancelled(?: before it started)?([.;:,] )(.+)$/s.exec(job.error?.message ?? '');
  return added === null ? undefined : `job ${job.id} was cancelled${onSignalText(signal)}${added[1]}${added[2]}`;
}

/**
 * A wait cut off by the daemon (its connection lost, or a wait refused because it is shutting down)
 * says which jobs were being waited for: they may still run, or have been stopped with the daemon,
 * and a rollback's error says what it left the disk in.
 */
function lostWhileWaiting(err: unknown, jobs: Job[]): unknown {
  if (!(err instanceof BlocksnapError) || jobs.length === 0) return err;
  const ids = jobs.map((j) => j.id).join(', ');
  const see = jobs.length === 1 ? `blocksnap job show ${ids}` : 'blocksnap job list';
  const details = { ...err.details, jobIds: jobs.map((j) => j.id) };
  const which = `job${jobs.length === 1 ? '' : 's'} ${ids}`;
  if (err.code === 'DaemonUnavailable') return new BlocksnapError(err.code, `${err.message} while waiting for ${which}; once the daemon answers, see: ${see}`, details);
  if (err.code === 'ShuttingDown') return new BlocksnapError(err.code, `${err.message} and cancels the jobs still running at a safe point; once it is back, see what became of ${which}: ${see}`, details);
  return err;
}

/** How a call followed by followCall ended. */
export interface FollowedCall<T> {
  result: T;
  /** Every job the call started, as it ended. */
  jobs: Job[];
  /** A signal asked for its jobs to be cancelled (some may have ended before the cancel landed). */
  cancelRequested: boolean;
  /** The signal that asked for it. */
  signal: WaitSignal;
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
    interactive, detachOnInterrupt: o.detachOnInterrupt, endsWithConnection: o.endsWithConnection === true, cancelNote: o.cancelNote, bar,
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
  const before = o.interruptedBefore?.() ?? null;
  if (before !== null) watch.onSignal(before);
  try {
    const outcome = await Promise.race([
      client.call<T>(method, params).catch((err: unknown) => { throw lostWhileWaiting(err, [...jobs.values()]); }),
      watch.detached,
    ]);
    if (outcome === 'detached') {
      throw new InterruptedWait([...jobs.values()], false, `detached from ${o.label}${onSignalText(watch.signal)}; ${jobs.size === 0 ? 'the jobs it started keep' : `job${jobs.size === 1 ? '' : 's'} ${ids()} keep${jobs.size === 1 ? 's' : ''}`} running in the daemon`, watch.signal);
    }
    return { result: outcome, jobs: [...jobs.values()], cancelRequested: watch.cancelRequested, signal: watch.signal };
  } finally {
    client.off('progress', onProgress);
    watch.dispose();
    bar?.clear();
  }
}
