/**
 * The one source of time for the scheduler. Injected, so due times, retries and retention are
 * tested by setting the time rather than by waiting for it.
 */
export interface Timer { cancel(): void }

export interface Clock {
  now(): Date;
  /** Calls fn once after ms (of this clock's time). */
  setTimer(ms: number, fn: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => new Date(),
  setTimer(ms, fn) {
    // unref: a pending scheduler tick must never keep a stopping daemon alive.
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};
