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

/** The wait ended because of Ctrl-C: the job was cancelled, or left running (detached). */
export class InterruptedWait extends Error {
  readonly job: Job;
  readonly cancelled: boolean;

  constructor(job: Job, cancelled: boolean) {
    super(cancelled ? `job ${job.id} was cancelled` : `detached from job ${job.id}; it keeps running in the daemon`);
    this.name = 'InterruptedWait';
    this.job = job;
    this.cancelled = cancelled;
  }
}

/**
 * Prints how a wait interrupted by Ctrl-C ended, in the mode's shape, and returns the exit status
 * (130). `to` takes the JSON, as reportError's does; human text goes to stderr.
 */
export function reportInterrupted(err: InterruptedWait, json: boolean, to: NodeJS.WritableStream = process.stdout): number {
  if (json) {
    if (err.cancelled) reportError(new BlocksnapError('Cancelled', err.message), true, to);
    else to.write(`${JSON.stringify(err.job, null, 2)}\n`);
  } else {
    process.stderr.write(`blocksnap: ${err.message}${err.cancelled ? '' : `; see: blocksnap job show ${err.job.id}`}\n`);
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
  const note = cancelNote === undefined ? '' : `\n${cancelNote}\n`;
  return `\nJob ${jobId} is still running.${note ? note : ' '}[c]ancel it, [d]etach and leave it running, or keep [w]aiting? [w] `;
}

/** Waits for `job` to end; returns it when it succeeded, throws its error otherwise. */
export async function followJob(client: DaemonClient, job: Job, o: FollowOptions): Promise<Job> {
  const showProgress = o.showProgress ?? process.stderr.isTTY === true;
  const interactive = o.interactive ?? (process.stdin.isTTY === true && process.stderr.isTTY === true);
  const bar = showProgress ? new ProgressBar(process.stderr, o.label) : null;
  let latest = job;
  let prompt: Interface | null = null;
  let cancelRequested = false;
  let stopWaiting!: () => void;
  const detached = new Promise<'detached'>((resolve) => {
    stopWaiting = () => resolve('detached');
  });

  const cancel = (): void => {
    cancelRequested = true;
    // Asked, the note was in the question; cancelled without asking, it is said now.
    if (!interactive && o.cancelNote !== undefined) process.stderr.write(`${o.cancelNote}\n`);
    process.stderr.write(`Cancelling job ${job.id}; press Ctrl-C again to stop waiting for it.\n`);
    client.call('job.cancel', { job: job.id }).catch(() => undefined);
  };
  const ask = (): void => {
    bar?.clear();
    prompt = createInterface({ input: process.stdin, output: process.stderr });
    const done = (answer: Answer): void => {
      prompt?.close();
      prompt = null;
      if (answer === 'cancel') cancel();
      else if (answer === 'detach') stopWaiting();
      else bar?.redraw();
    };
    // Ctrl-C at the prompt means "let me go": detach, which loses no work.
    prompt.on('SIGINT', () => done('detach'));
    prompt.question(interruptQuestion(job.id, o.cancelNote), (a) => {
      const t = a.trim().toLowerCase();
      done(t.startsWith('c') ? 'cancel' : t.startsWith('d') ? 'detach' : 'wait');
    });
  };
  const onInterrupt = (): void => {
    if (prompt !== null) return;
    if (cancelRequested) stopWaiting();
    else if (interactive) ask();
    else if (o.detachOnInterrupt) stopWaiting();
    else cancel();
  };

  process.on('SIGINT', onInterrupt);
  if (o.interruptedBefore?.() === true) onInterrupt();
  try {
    const outcome = await Promise.race([
      client.waitJob(job.id, (j) => {
        latest = j;
        if (prompt === null) bar?.update(j.doneBytes, j.totalBytes, Date.now(), j.progressUnit);
      }),
      detached,
    ]);
    if (outcome === 'detached') throw new InterruptedWait(latest, false);
    if (outcome.state === 'succeeded') return outcome;
    if (cancelRequested && outcome.state === 'cancelled') throw new InterruptedWait(outcome, true);
    throw jobError(outcome);
  } finally {
    process.off('SIGINT', onInterrupt);
    (prompt as Interface | null)?.close();
    bar?.clear();
  }
}
