/**
 * In-process locks of the engine (one daemon per data dir makes them sufficient; the data-dir
 * lock enforces that). See the locking table in docs/design.md.
 *
 * DiskLocks: one job per disk. A second job on a busy disk fails at once with DiskBusy rather
 *   than queueing: an operator (or a scheduler) decides whether to retry.
 * StoreLock: a readers-writer lock over block *deletion*. Snapshot jobs hold it shared from
 *   before their scan until their commit, because a scan that finds a block file already present
 *   does not write it again and will reference it at commit: that file must not be unlinked in
 *   between. The sweeper and gc hold it exclusive. Waiting writers are served before a waiting
 *   exclusive holder only when no exclusive holder is queued, so gc cannot starve.
 */
import { BlocksnapError } from '../errors';

export class DiskLocks {
  private readonly holders = new Map<string, string>();

  /** Takes the disk for jobId, or throws DiskBusy naming the job that holds it. */
  acquire(diskId: string, jobId: string): () => void {
    const holder = this.holders.get(diskId);
    if (holder !== undefined) {
      throw new BlocksnapError('DiskBusy', `disk ${diskId} is busy with job ${holder}`, { diskId, jobId: holder });
    }
    this.holders.set(diskId, jobId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holders.delete(diskId);
    };
  }

  holder(diskId: string): string | undefined {
    return this.holders.get(diskId);
  }
}

type Waiter = { exclusive: boolean; grant: () => void };

export class StoreLock {
  private shared = 0;
  private exclusive = false;
  private readonly queue: Waiter[] = [];

  get sharedHolders(): number { return this.shared; }

  acquireShared(): Promise<() => void> {
    return this.enqueue(false);
  }

  acquireExclusive(): Promise<() => void> {
    return this.enqueue(true);
  }

  /** Exclusive without waiting: null when anyone holds or waits for the lock. */
  tryExclusive(): (() => void) | null {
    if (this.exclusive || this.shared > 0 || this.queue.length > 0) return null;
    this.exclusive = true;
    return this.releaser(true);
  }

  private enqueue(exclusive: boolean): Promise<() => void> {
    return new Promise((resolve) => {
      this.queue.push({ exclusive, grant: () => resolve(this.releaser(exclusive)) });
      this.drain();
    });
  }

  private releaser(exclusive: boolean): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (exclusive) this.exclusive = false; else this.shared--;
      this.drain();
    };
  }

  private drain(): void {
    while (this.queue.length > 0 && !this.exclusive) {
      const next = this.queue[0]!;
      if (next.exclusive) {
        if (this.shared > 0) return;
        this.queue.shift();
        this.exclusive = true;
        next.grant();
        return;
      }
      this.queue.shift();
      this.shared++;
      next.grant();
    }
  }
}
