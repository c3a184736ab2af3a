/**
 * Closes the block files served exports and copy-on-write disks keep open once no read has used
 * them for --block-file-idle. Volumes keep up to a quarter of RLIMIT_NOFILE open between reads
 * so that a reader does not open a file per request (native/volume/base_view.h); an export
 * nobody read any more kept its share, descriptors and a few verified blocks of memory, for as
 * long as it was served. Closing is safe at any time: a read holds the file it uses, not the
 * cache, and the next read opens the file again.
 */
import type { Logger } from 'pino';
import { closeIdleBlockFiles } from '../native/volume';

/** How often the files are looked at: a file goes between `idleMs` and `idleMs` + this after its last read. */
export function sweepIntervalMs(idleMs: number): number {
  return Math.min(5_000, Math.max(500, Math.floor(idleMs / 2)));
}

/** Starts the sweep; the returned function stops it. The timer never keeps the process alive. */
export function startIdleBlockFileSweep(idleMs: number, log: Logger): () => void {
  const timer = setInterval(() => {
    try {
      const closed = closeIdleBlockFiles(idleMs);
      if (closed > 0) log.debug({ closed, idleMs }, 'closed block files no read used lately');
    } catch (err) {
      log.warn({ err }, 'closing idle block files failed');
    }
  }, sweepIntervalMs(idleMs));
  timer.unref();
  return () => clearInterval(timer);
}
