/**
 * The daemon's warning when it runs out of file descriptors (src/fd-exhaustion.ts): one line
 * naming the limit, how many are open and what to raise, at most once a minute however many
 * requests fail meanwhile (the next line counts those). Clients that libuv drops at accept
 * reach no code of the daemon, so a probe opens /dev/null every few seconds: while the daemon
 * is at its limit that open fails too, and the warning says so.
 */
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { fdExhaustionOf, watchFdExhaustion, type FdExhaustion } from '../fd-exhaustion';
import { openFileLimit } from './fd-limit';

/** At most one warning in this long. */
export const FD_WARNING_GAP_MS = 60_000;
/** How often the daemon checks that it can still open a file. */
export const FD_PROBE_MS = 5_000;

export class FdExhaustionLog {
  private lastWarned = -Infinity;
  private suppressed = 0;
  /** Read at start: at the limit, /proc/self/limits cannot be opened either. */
  private limit: number | null = ownLimit();

  /** `now`: the clock the gap is measured on. */
  constructor(private readonly log: Logger, private readonly gapMs = FD_WARNING_GAP_MS, private readonly now: () => number = Date.now) {}

  /** Listens for shortages and starts the probe; the returned function stops both. */
  start(probeMs = FD_PROBE_MS): () => void {
    const unwatch = watchFdExhaustion((kind, where) => this.note(kind, where));
    const timer = setInterval(() => this.probe(), probeMs);
    timer.unref();
    return () => {
      unwatch();
      clearInterval(timer);
    };
  }

  /** Warns of a shortage, unless one was logged within the gap. */
  note(kind: FdExhaustion, where: string | undefined): void {
    const now = this.now();
    if (now - this.lastWarned < this.gapMs) {
      this.suppressed++;
      return;
    }
    this.lastWarned = now;
    const limit = ownLimit() ?? this.limit;
    this.limit = limit;
    const open = openCount(kind, limit);
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.log.warn({ errno: kind, where: where ?? null, open, limit, ...(suppressed > 0 ? { suppressed } : {}) }, warningText(kind, where, open, limit));
  }

  /** Opens and closes /dev/null: failing with EMFILE or ENFILE, the daemon is out of descriptors now. */
  probe(): void {
    try {
      closeSync(openSync('/dev/null', 'r'));
    } catch (err) {
      const kind = fdExhaustionOf(err);
      if (kind !== null) this.note(kind, 'any new connection or file (clients connecting now are closed unanswered)');
    }
  }
}

export function warningText(kind: FdExhaustion, where: string | undefined, open: number | null, limit: number | null): string {
  const at = where !== undefined ? ` at ${where}` : '';
  const count = `${open ?? 'an unknown number of'} descriptors open, the daemon's limit (RLIMIT_NOFILE) is ${limit ?? 'unlimited'}`;
  const effect = 'until some close, new clients are disconnected unanswered, and jobs and NBD reads that open a file fail';
  if (kind === 'ENFILE') {
    return `the system's open-file table is full (ENFILE${at}): ${count}; ${effect}; raise fs.file-max (sysctl) or find what holds the files`;
  }
  return `the daemon ran out of file descriptors (EMFILE${at}): ${count}; ${effect}; ` +
    'raise the limit (LimitNOFILE= in the systemd unit, ulimit -n for a daemon started by hand) or lower --max-connections';
}

function ownLimit(): number | null {
  try {
    return openFileLimit(readFileSync('/proc/self/limits', 'utf8'));
  } catch {
    return null;
  }
}

/** Descriptors open now; at EMFILE the listing itself cannot be opened, and the count is the limit. */
function openCount(kind: FdExhaustion, limit: number | null): number | null {
  try {
    return readdirSync('/proc/self/fd').length - 1; // the listing's own
  } catch (err) {
    return kind === 'EMFILE' && fdExhaustionOf(err) === 'EMFILE' ? limit : null;
  }
}
