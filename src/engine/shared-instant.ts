/**
 * One instant for the copy-on-write members of a snapshot group (docs/design.md "Snapshot
 * groups"). Each member's job reaches its instant on its own (CowVolumes.freeze); alone, each
 * would flush and close its own I/O gate when it got there, so the members' cuts could lie
 * hundreds of milliseconds apart, and a write a guest issued to one disk only after another
 * disk acknowledged its own could be in the group without that other write.
 *
 * The members meet twice. `flushed`: every member has flushed its top layer with I/O flowing;
 * only then does any gate close, so no member's requests wait for another's flush. `held`:
 * every member's gate is closed; the moment the last one closes, no request of any member is in
 * progress, and that moment is the group's instant. The last member to close lists every
 * member's fresh layer in one catalog transaction (one commit inside the pause, not one per
 * member); each member then pushes its layer and reopens its own gate: a write let through after
 * that lands above the frozen layers of its own disk, and every other disk's frozen layers were
 * already closed to writes.
 *
 * A member that fails or is cancelled before the instant leaves: every member still waiting is
 * released with `Cancelled`, reopens its gate and fails, and the group fails with the leaver's
 * error (SnapshotGroups.settle). After the instant, a member's failure is its own; the others'
 * pushed layers stay recorded and the next snapshot of each disk freezes them (cow-disks.ts).
 */
import { BlocksnapError, toBlocksnapError } from '../errors';

export type InstantStage = 'flushed' | 'held';

interface Meeting {
  arrived: Set<string>;
  met: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class SharedInstant {
  private readonly meetings = new Map<InstantStage, Meeting>();
  private left: { diskId: string; error: BlocksnapError } | null = null;
  private taken = false;
  private heldSince = Infinity;
  private reopenedAt = 0;
  private reopened = 0;
  /** From the first gate closed to the last reopened, once every member has reopened its gate. */
  pauseMs: number | null = null;

  private readonly records: Array<() => void> = [];

  /**
   * `members`: the ids of the copy-on-write disks of the group, each with a job that will meet.
   * `txn`: runs a catalog transaction.
   */
  constructor(private readonly members: ReadonlySet<string>, private readonly txn: (fn: () => void) => void) {}

  /**
   * Resolves once every member has reached `stage`. Rejects with `Cancelled` once a member has
   * left before the instant, or when `signal` aborts (this member then leaves). At `held`,
   * `record` lists the member's fresh layer: the last member to arrive runs every member's in one
   * catalog transaction (one commit, not one per member, inside the pause); if it fails, every
   * member fails with its error and no layer is listed.
   */
  async meet(diskId: string, stage: InstantStage, signal: AbortSignal, record?: () => void): Promise<void> {
    if (this.left) throw this.released();
    const m = this.meeting(stage);
    m.arrived.add(diskId);
    if (record) this.records.push(record);
    if (m.arrived.size === this.members.size) {
      if (stage === 'held') {
        try {
          this.txn(() => { for (const r of this.records) r(); });
        } catch (err) {
          this.left = { diskId, error: toBlocksnapError(err) };
          m.reject(this.left.error);
          throw this.left.error;
        }
        this.taken = true;
      }
      m.resolve();
    }
    if (signal.aborted) this.leave(diskId, new BlocksnapError('Cancelled', 'the job was cancelled'));
    const onAbort = (): void => this.leave(diskId, new BlocksnapError('Cancelled', 'the job was cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await m.met;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Records that this member's gate closed at `at` (performance.now()). */
  held(at: number): void {
    this.heldSince = Math.min(this.heldSince, at);
  }

  /** Records that this member's gate reopened at `at`, after the instant or after leaving. */
  reopen(at: number): void {
    this.reopenedAt = Math.max(this.reopenedAt, at);
    if (++this.reopened === this.members.size) this.pauseMs = Math.round((this.reopenedAt - this.heldSince) * 10) / 10;
  }

  /**
   * A member that will not reach the instant (it failed, or was cancelled): every member waiting,
   * or yet to arrive, is released with `Cancelled`. Nothing once the instant is taken.
   */
  leave(diskId: string, err: unknown): void {
    if (this.taken || this.left) return;
    this.left = { diskId, error: toBlocksnapError(err) };
    const e = this.released();
    for (const stage of ['flushed', 'held'] as const) this.meeting(stage).reject(e);
  }

  /**
   * Whether this member failed only because another one left before the instant: the group
   * reports the leaver's error, not the ones it released.
   */
  releasedBy(diskId: string): boolean {
    return this.left !== null && this.left.diskId !== diskId;
  }

  private released(): BlocksnapError {
    const l = this.left!;
    return new BlocksnapError('Cancelled',
      `the member snapshot of disk ${l.diskId} failed before the group's common instant (${l.error.code}: ${l.error.message}), so no member was taken`,
      { diskId: l.diskId });
  }

  private meeting(stage: InstantStage): Meeting {
    let m = this.meetings.get(stage);
    if (!m) {
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const met = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
      // Rejected before anyone waits on it when a member leaves early.
      met.catch(() => undefined);
      m = { arrived: new Set(), met, resolve, reject };
      this.meetings.set(stage, m);
    }
    return m;
  }
}
