/**
 * Retries with exponential backoff and full jitter for the failures that a retry can cure:
 * connection errors, timeouts, throttling and 5xx answers. Authentication, a missing bucket or a
 * 4xx are final at once: repeating them only delays the answer the operator needs.
 */
import { BlocksnapError } from '../errors';

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Backoff before attempt n+1 is random in [0, min(maxDelayMs, baseDelayMs * 2^n)). */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 200, maxDelayMs: 5000 };

export class Transient extends Error {
  constructor(readonly final: BlocksnapError) {
    super(final.message);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new BlocksnapError('Cancelled', 'cancelled'));
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = (): void => { clearTimeout(timer); reject(new BlocksnapError('Cancelled', 'cancelled')); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs fn until it succeeds, throws a non-Transient error, or the attempts are used up (then the
 * last Transient's final error is thrown). `onRetry` counts retries for the job's result.
 */
export async function withRetry<T>(fn: () => Promise<T>, o: { policy?: RetryPolicy; signal?: AbortSignal; onRetry?: () => void } = {}): Promise<T> {
  const p = o.policy ?? DEFAULT_RETRY;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof Transient)) throw err;
      if (attempt + 1 >= p.attempts) throw err.final;
      if (o.signal?.aborted) throw new BlocksnapError('Cancelled', 'cancelled');
      o.onRetry?.();
      await sleep(Math.random() * Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** attempt), o.signal);
    }
  }
}
