/**
 * In-process locks of the engine (one daemon per data dir makes them sufficient; the data-dir
 * lock enforces that). See the locking table in docs/design.md.
 *
 * DiskLocks: one job per disk, and one per image file: two disk ids on one file (a hard link
 *   put in place of an image after it was registered) must not run a snapshot and a rollback of
 *   that file at once. A second job on a busy disk or file fails at once with DiskBusy rather
 *   than queueing: an operator (or a scheduler) decides whether to retry.
 * StoreLock: a readers-writer lock over block *deletion*. Snapshot jobs hold it shared from
 *   before their scan until their commit, because a scan that finds a block file already present
 *   does not write it again and will reference it at commit: that file must not be unlinked in
 *   between. The sweeper and gc hold it exclusive. Waiting writers are served before a waiting
 *   exclusive holder only when no exclusive holder is queued, so gc cannot starve; so a shared
 *   holder that is slow delays every later one behind a queued gc, and a wait must be one its job
 *   can leave: every wait takes the job's AbortSignal.
 */
import { BlocksnapError } from '../errors';

export class DiskLocks {
  private readonly holders = new Map<string, string>();
  /** Image file (its identity) → the disk whose job holds it. */
  private readonly files = new Map<string, string>();

  /**
   * `fileOf` names a disk's image file by an identity two paths of one file share (device and
   * inode), or null for a disk whose file is its own by construction or cannot be read now.
   * `nameOf` gives the disk's name for messages: the operator knows disks by the names they gave.
   */
  constructor(
    private readonly fileOf: (diskId: string) => string | null = () => null,
    private readonly nameOf: (diskId: string) => string = (diskId) => diskId,
  ) {}

  /** Takes the disk and its image file for jobId, or throws DiskBusy naming the job that holds either. */
  acquire(diskId: string, jobId: string): () => void {
    const file = this.fileOf(diskId);
    const busy = this.busy({ id: diskId, name: this.nameOf(diskId) }, file, '');
    if (busy) throw busy;
    this.holders.set(diskId, jobId);
    if (file !== null) this.files.set(file, diskId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holders.delete(diskId);
      if (file !== null) this.files.delete(file);
    };
  }

  /** The DiskBusy a job on the disk (whose image file is `file`) would meet now, or undefined. */
  private busy(d: { id: string; name: string }, file: string | null, after: string): BlocksnapError | undefined {
    const holder = this.holders.get(d.id);
    if (holder !== undefined) return new BlocksnapError('DiskBusy', `disk ${d.name} is busy with job ${holder}${after}`, { diskId: d.id, jobId: holder });
    const fileHolder = file === null ? undefined : this.files.get(file);
    if (fileHolder === undefined) return undefined;
    const job = this.holders.get(fileHolder)!;
    return new BlocksnapError('DiskBusy', `disk ${d.name} has the same image file as disk ${this.nameOf(fileHolder)}, which is busy with job ${job}${after}`,
      { diskId: d.id, jobId: job, sameFileAs: fileHolder });
  }

  holder(diskId: string): string | undefined {
    return this.holders.get(diskId);
  }

  /**
   * Throws the DiskBusy that acquiring each of `disks` would, or that acquiring them together
   * would (two of them on one image file), taking nothing: for a group, which must find every
   * member free before it starts any. `after` ends the messages.
   */
  checkFree(disks: Array<{ id: string; name: string }>, after: string): void {
    const mine = new Map<string, { id: string; name: string }>(); // image file → the listed disk on it
    for (const d of disks) {
      const file = this.fileOf(d.id);
      const busy = this.busy(d, file, after);
      if (busy) throw busy;
      if (file === null) continue;
      const twin = mine.get(file);
      if (twin !== undefined) {
        throw new BlocksnapError('DiskBusy', `disks ${twin.name} and ${d.name} have the same image file, which one job at a time may use${after}`,
          { diskId: d.id, sameFileAs: twin.id });
      }
      mine.set(file, d);
    }
  }
}

type Waiter = { exclusive: boolean; grant: () => void };

/** Why a wait for the store lock ended without it: the job was cancelled (or the daemon is stopping). */
const cancelledWaiting = (): BlocksnapError => new BlocksnapError('Cancelled', 'the job was cancelled while waiting for the store lock');

export class StoreLock {
  private shared = 0;
  private exclusive = false;
  private readonly queue: Waiter[] = [];

  /**
   * `onFree` runs (synchronously) each time a release leaves the lock with no holder and no
   * waiter: the engine sweeps then what deletes freed while the lock was held, whoever held it.
   */
  constructor(private readonly onFree: () => void = () => {}) {}

  get sharedHolders(): number { return this.shared; }

  /** Waiters not yet granted the lock. */
  get waiting(): number { return this.queue.length; }

  /**
   * Resolves to the releaser once granted; rejects with Cancelled, holding nothing, as soon as
   * `signal` aborts before that.
   */
  acquireShared(signal: AbortSignal): Promise<() => void> {
    return this.enqueue(false, signal);
  }

  acquireExclusive(signal: AbortSignal): Promise<() => void> {
    return this.enqueue(true, signal);
  }

  /** Exclusive without waiting: null when anyone holds or waits for the lock. */
  tryExclusive(): (() => void) | null {
    if (this.exclusive || this.shared > 0 || this.queue.length > 0) return null;
    this.exclusive = true;
    return this.releaser(true);
  }

  private enqueue(exclusive: boolean, signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(cancelledWaiting());
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        exclusive,
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.releaser(exclusive));
        },
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(w);
        if (i < 0) return;
        this.queue.splice(i, 1);
        reject(cancelledWaiting());
        // A queued exclusive holder that leaves may have been all that kept shared ones waiting.
        this.drain();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.queue.push(w);
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
      if (!this.exclusive && this.shared === 0 && this.queue.length === 0) this.onFree();
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
