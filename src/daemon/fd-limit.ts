/**
 * The open-file limit against what --max-connections asks for. Past RLIMIT_NOFILE, libuv accepts
 * each new client and closes it at once to keep its listening socket from spinning, and tells
 * Node nothing: clients see the daemon hang up on them, and only a probe of the daemon's own
 * (daemon/fd-exhaustion-log.ts) can tell. So the start says so while it can. Node has already raised the soft limit to the hard one by then, so the
 * limit read here is the one the daemon runs with.
 */
import { readFileSync } from 'node:fs';

/**
 * Descriptors the daemon holds besides one per client: the catalog and its lock, the listening
 * sockets, stdio, and for each running job its image, block files in flight on every worker
 * thread, and a target or stream.
 */
export const FD_RESERVE = 256;

/**
 * The share of the limit that copy-on-write volumes (served exports, jobs reading one) may hold
 * in block files kept open between reads, all together (native/volume/base_view.h): the rest
 * must hold the clients and the reserve.
 */
export const KEPT_BLOCK_FILES_SHARE = 1 / 4;

/** The soft RLIMIT_NOFILE from /proc/self/limits; null when unlimited or unreadable. */
export function openFileLimit(limits: string): number | null {
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  return m === null || m[1] === 'unlimited' ? null : Number(m[1]);
}

/** The warning the start logs, or null when the limit leaves room for every client. */
export function fdLimitWarning(limit: number | null, maxConnections: number): { limit: number; needed: number; message: string } | null {
  const needed = Math.ceil((maxConnections + FD_RESERVE) / (1 - KEPT_BLOCK_FILES_SHARE));
  if (limit === null || limit >= needed) return null;
  return {
    limit, needed,
    message: `the open-file limit (RLIMIT_NOFILE) is ${limit}, below the ${needed} that --max-connections ${maxConnections} needs with room for jobs ` +
      'and for the block files served volumes keep open (a quarter of the limit): ' +
      'past it, new clients are disconnected unanswered (a warning says so when it happens); raise it (LimitNOFILE= in a systemd unit, ulimit -n) or lower --max-connections',
  };
}

/** The warning for this process, or null (also where /proc cannot be read). */
export function ownFdLimitWarning(maxConnections: number): ReturnType<typeof fdLimitWarning> {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
  return fdLimitWarning(openFileLimit(text), maxConnections);
}
