/**
 * Where running out of file descriptors is said. EMFILE (this process's RLIMIT_NOFILE used up)
 * and ENFILE (the system's file table full) reach the daemon's callers as an IOError of a failed
 * job, an EIO to an NBD client or, at accept, as nothing at all (libuv accepts and closes the
 * client to keep its listening socket from spinning, and tells Node nothing): the operator saw a
 * failed job or a dropped client with nothing in the log naming the limit. The errors pass
 * through one place on their way (fromNative for the addon's, toBlocksnapError for Node's), which
 * reports them here; the daemon logs them (daemon/fd-exhaustion-log.ts), and probes for the
 * accepts it cannot see.
 */

export type FdExhaustion = 'EMFILE' | 'ENFILE';

/** Told of each descriptor shortage: which one, and the call and path that met it where known. */
export type FdExhaustionListener = (kind: FdExhaustion, where: string | undefined) => void;

const listeners = new Set<FdExhaustionListener>();

const ERRNO: Record<number, FdExhaustion> = { 24: 'EMFILE', 23: 'ENFILE' };

/** Hears of every shortage reported until the returned function is called. */
export function watchFdExhaustion(listener: FdExhaustionListener): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}

/**
 * EMFILE or ENFILE when `err` is that failure: a Node error's code, the addon's errno detail
 * (a number), or an error message that quotes it; null for anything else.
 */
export function fdExhaustionOf(err: unknown): FdExhaustion | null {
  if (typeof err !== 'object' || err === null) return null;
  const e = err as { code?: unknown; errno?: unknown; details?: { errno?: unknown }; message?: unknown };
  if (e.code === 'EMFILE' || e.code === 'ENFILE') return e.code;
  for (const errno of [e.errno, e.details?.errno]) {
    if (typeof errno === 'number' && ERRNO[Math.abs(errno)] !== undefined) return ERRNO[Math.abs(errno)]!;
  }
  if (typeof e.message !== 'string') return null;
  if (/\bENFILE\b|too many open files in system/i.test(e.message)) return 'ENFILE';
  if (/\bEMFILE\b|too many open files/i.test(e.message)) return 'EMFILE';
  return null;
}

/** Reports `err` when it is a descriptor shortage; anything else is ignored. Never throws. */
export function reportFdExhaustion(err: unknown, where?: string): void {
  if (listeners.size === 0) return;
  const kind = fdExhaustionOf(err);
  if (kind === null) return;
  const e = err as { syscall?: unknown; path?: unknown; details?: { syscall?: unknown; path?: unknown } };
  const syscall = e.syscall ?? e.details?.syscall;
  const path = e.path ?? e.details?.path;
  const at = where ?? [syscall, path].filter((s): s is string => typeof s === 'string').join(' ');
  for (const listener of listeners) {
    try {
      listener(kind, at === '' ? undefined : at);
    } catch {
      // The caller's own error is what matters to it; the log line is best effort.
    }
  }
}
