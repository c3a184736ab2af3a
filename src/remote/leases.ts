/**
 * Leases on a shared bucket: how gc and the writers of several hosts stay out of each other's
 * way without any atomic primitive beyond S3's strong read-after-write (docs/design.md "Remote
 * gc"). A lease is a small object `leases/<kind>.<hostId>.<jobId>.json`; its holder rewrites it
 * every TTL/5 and deletes it when done, and it counts as live for a TTL after its last write (the
 * listing's last-modified time), so a crashed holder's lease expires.
 *
 * Writers (replicate) and gc each PUT their own lease first and LIST the others second. For any
 * writer W and gc G, one of the two lists comes after both puts, so at least one side sees the
 * other. A writer that sees a live gc lease withdraws its own and waits; gc that sees live writer
 * leases waits for them to end (writers that arrive meanwhile see gc and wait, so gc cannot
 * starve). Hence gc never marks or sweeps while a writer is between its first upload and its
 * manifest. A holder that could not renew its lease in time stops before its next irreversible
 * step (a manifest upload, a delete batch): it may have been presumed dead.
 *
 * A crashed holder's lease is live until it expires. Its own data dir's next daemon need not
 * wait that long: the caller tells (`isStale`) which of its host's job ids certainly no longer run
 * (docs/design.md "Remote gc", rule 6), and writers and gcs delete those leases as they find them.
 */
import { BlocksnapError } from '../errors';
import { join, LEASES } from './layout';
import type { ObjectStore } from './object-store';

export type LeaseKind = 'writer' | 'gc';

export interface LeaseTiming {
  /** Lifetime of a lease after each renewal. */
  ttlMs: number;
  /** Added to an expiry read from another host, for clock skew between hosts. */
  skewMs: number;
  /** How long to wait for the other side before giving up with RemoteBusy. */
  waitMs: number;
  /** Poll interval while waiting. */
  pollMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { ttlMs: 300_000, skewMs: 30_000, waitMs: 600_000, pollMs: 1000 };

/** What a lease object holds, for people looking at the bucket; holders decide by the listing alone. */
interface LeaseBody { kind: LeaseKind; host: string; jobId: string; startedAt: string; expiresAt: string }

export interface LeaseInfo { key: string; kind: LeaseKind; host: string; jobId: string; writtenAt: string; expiresAt: string; live: boolean }

const LEASE_KEY = /\/(writer|gc)\.([A-Za-z0-9-]+)\.(j-[0-9a-f]{16})\.json$/;

export function leaseKey(prefix: string, kind: LeaseKind, host: string, jobId: string): string {
  return join(prefix, LEASES, `${kind}.${host}.${jobId}.json`);
}

/**
 * Every lease under the prefix, with whether it is still live: last written less than a TTL (plus
 * the skew allowance) ago. The listing's last-modified times come from the storage's clock, so
 * only the skew between this host and the storage matters; no lease body needs to be read.
 */
export async function listLeases(store: ObjectStore, prefix: string, timing: LeaseTiming, signal?: AbortSignal): Promise<LeaseInfo[]> {
  const out: LeaseInfo[] = [];
  for await (const o of store.list(`${join(prefix, LEASES)}/`, signal)) {
    const m = LEASE_KEY.exec(o.key);
    // Not another remote's lease, whose prefix lies under leases/.
    if (!m || o.key !== leaseKey(prefix, m[1] as LeaseKind, m[2]!, m[3]!)) continue;
    const expires = o.lastModified.getTime() + timing.ttlMs;
    out.push({ key: o.key, kind: m[1] as LeaseKind, host: m[2]!, jobId: m[3]!, writtenAt: o.lastModified.toISOString(), expiresAt: new Date(expires).toISOString(), live: expires + timing.skewMs > Date.now() });
  }
  return out;
}

export interface LeaseOptions {
  timing?: LeaseTiming;
  signal?: AbortSignal;
  /**
   * Whether a lease of this host, by its job id, is certainly not held by a live process: the job
   * ran on this data dir (one daemon per data dir, under its lock) and is not running now. Only
   * ever asked about leases that carry this host's id. Without it, no lease counts as stale.
   */
  isStale?: (jobId: string) => boolean;
}

export class Lease {
  /**
   * When the last renewal was sent, on the monotonic clock (null: no live lease object). Elapsed
   * time is what the holder's checks measure; a wall clock stepped back (NTP, a resumed VM) would
   * stretch it past what other hosts, reading the storage's clock, allow.
   */
  private renewedAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private renewError: BlocksnapError | null = null;
  /**
   * Set once a renewal came later than TTL − skew after the one before: other hosts may have
   * taken the lease for dead meanwhile and acted on it (a gc marked without this writer's
   * manifest, a writer relied on blocks this gc had marked as garbage), and a later renewal does
   * not undo that. The lease stays lost: its holder stops at its next step.
   */
  private lapsedMs: number | null = null;
  /** The background renewal in flight, if any. */
  private renewing: { abort: AbortController; done: Promise<void> } | null = null;
  private released = false;
  readonly key: string;
  private readonly startedAt = new Date().toISOString();

  private constructor(
    private readonly store: ObjectStore,
    prefix: string,
    readonly kind: LeaseKind,
    readonly host: string,
    readonly jobId: string,
    private readonly timing: LeaseTiming,
  ) {
    this.key = leaseKey(prefix, kind, host, jobId);
  }

  /**
   * Takes a writer lease: put, list, and withdraw-and-wait while a live gc lease exists. Stale
   * leases of this host (`isStale`) are removed first, so that a crashed run holds no gc off.
   */
  static async writer(store: ObjectStore, prefix: string, host: string, jobId: string, o: LeaseOptions = {}): Promise<Lease> {
    const timing = o.timing ?? DEFAULT_LEASE_TIMING;
    const lease = new Lease(store, prefix, 'writer', host, jobId, timing);
    const deadline = Date.now() + timing.waitMs;
    try {
      for (;;) {
        await lease.renew(o.signal);
        const others = await listLeases(store, prefix, timing, o.signal);
        const stale = await lease.clearStale(others, o);
        const gc = others.find((l) => l.kind === 'gc' && l.live && !stale.has(l));
        if (!gc) break;
        await store.deleteMany([lease.key], o.signal);
        lease.renewedAt = null; // withdrawn: the next put starts a new lease, not a late renewal
        if (Date.now() > deadline) {
          throw new BlocksnapError('RemoteBusy', `a gc of this remote (host ${gc.host}, job ${gc.jobId}) has held its lease for longer than ${timing.waitMs / 1000} s`);
        }
        await pause(timing.pollMs, o.signal);
      }
    } catch (err) {
      // A lease put before the failure (a listing that failed, a job cancelled meanwhile) would
      // hold every gc off until it expires; nobody else deletes it.
      await lease.release();
      throw err;
    }
    lease.startRenewing();
    return lease;
  }

  /**
   * Takes a gc lease, then waits until no live writer lease remains. Stale leases of this host
   * (`isStale`) are deleted, not waited for: a replication of a daemon that crashed would
   * otherwise hold this gc off until its lease expired.
   */
  static async gc(store: ObjectStore, prefix: string, host: string, jobId: string, o: LeaseOptions & { onWait?: (writers: LeaseInfo[]) => void } = {}): Promise<Lease> {
    const timing = o.timing ?? DEFAULT_LEASE_TIMING;
    const lease = new Lease(store, prefix, 'gc', host, jobId, timing);
    await lease.renew(o.signal);
    lease.startRenewing();
    const deadline = Date.now() + timing.waitMs;
    try {
      for (;;) {
        const all = await listLeases(store, prefix, timing, o.signal);
        const stale = await lease.clearStale(all, o);
        const writers = all.filter((l) => l.kind === 'writer' && l.live && !stale.has(l));
        if (writers.length === 0) return lease;
        if (Date.now() > deadline) {
          throw new BlocksnapError('RemoteBusy', `${writers.length} replication(s) still hold writer leases after ${timing.waitMs / 1000} s (first: host ${writers[0]!.host}, job ${writers[0]!.jobId})`);
        }
        o.onWait?.(writers);
        await pause(timing.pollMs, o.signal);
      }
    } catch (err) {
      await lease.release();
      throw err;
    }
  }

  /**
   * Deletes the leases among `all` that this host's daemon knows to be stale, and returns them.
   * `isStale` is asked on every pass, never remembered: a job of this daemon that starts while
   * the holder waits is running, and its lease must stay.
   */
  private async clearStale(all: LeaseInfo[], o: LeaseOptions): Promise<Set<LeaseInfo>> {
    const stale = new Set(all.filter((l) => l.host === this.host && l.key !== this.key && (o.isStale?.(l.jobId) ?? false)));
    if (stale.size > 0) await this.store.deleteMany([...stale].map((l) => l.key), o.signal);
    return stale;
  }

  private async renew(signal?: AbortSignal): Promise<void> {
    const at = monotonicMs();
    const body: LeaseBody = { kind: this.kind, host: this.host, jobId: this.jobId, startedAt: this.startedAt, expiresAt: new Date(Date.now() + this.timing.ttlMs).toISOString() };
    await this.store.put(this.key, Buffer.from(`${JSON.stringify(body)}\n`), signal);
    if (this.renewedAt !== null) {
      const gap = monotonicMs() - this.renewedAt;
      if (gap > this.timing.ttlMs - this.timing.skewMs) this.lapsedMs ??= gap;
    }
    this.renewedAt = at;
  }

  private startRenewing(): void {
    const tick = (): void => {
      this.timer = setTimeout(() => {
        if (this.released) return;
        const ac = new AbortController();
        this.renewing = {
          abort: ac,
          done: this.renew(ac.signal).then(() => { this.renewError = null; }, (err: unknown) => {
            this.renewError = err instanceof BlocksnapError ? err : new BlocksnapError('RemoteError', String(err));
          }).finally(() => {
            this.renewing = null;
            if (!this.released) tick();
          }),
        };
      }, this.timing.ttlMs / 5);
      this.timer.unref();
    };
    tick();
  }

  /** How long the lease went unrenewed, when other hosts may count (or have counted) it expired; else null. */
  private overdue(): number | null {
    if (this.lapsedMs !== null) return this.lapsedMs;
    if (this.renewedAt === null) return Infinity;
    const age = monotonicMs() - this.renewedAt;
    return age > this.timing.ttlMs - this.timing.skewMs ? age : null;
  }

  private expired(age: number): BlocksnapError {
    return new BlocksnapError('RemoteBusy', `the ${this.kind} lease ${this.key} was not renewed for ${Math.round(age / 1000)} s${this.renewError ? ` (${this.renewError.message})` : ''}; rerun to continue`);
  }

  /**
   * Throws RemoteBusy when the lease may have expired in the eyes of other hosts (its last renewal
   * is older than the TTL minus the skew allowance), now or at any time since it was taken: the
   * caller must not take its next step.
   */
  assertHeld(): void {
    const age = this.overdue();
    if (age !== null) throw this.expired(age);
  }

  /**
   * Runs one irreversible step (a manifest upload, a delete batch) with a signal that aborts it,
   * retries included, once the lease may have expired: checking only before the step would let
   * retries land minutes later, after a gc of another host took the lease for dead. A request
   * the store received before the abort may still be applied a little later; the skew allowance
   * other hosts add covers that. Throws RemoteBusy when the lease ran out, else fn's outcome.
   */
  async whileHeld<T>(signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.assertHeld();
    const ac = new AbortController();
    let lapsed: number | null = null;
    let timer: NodeJS.Timeout | null = null;
    const watch = (): void => {
      timer = setTimeout(() => {
        lapsed = this.overdue();
        if (lapsed !== null) ac.abort(); else watch();
      }, Math.max(1, (this.renewedAt ?? 0) + this.timing.ttlMs - this.timing.skewMs - monotonicMs() + 1));
    };
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) ac.abort();
    watch();
    try {
      return await fn(ac.signal);
    } catch (err) {
      if (lapsed !== null) throw this.expired(lapsed);
      throw err;
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearTimeout(this.timer);
    // A renewal still under way would write the lease again after its deletion, alive for a TTL.
    if (this.renewing) {
      this.renewing.abort.abort();
      await this.renewing.done;
    }
    // A lease that cannot be deleted expires on its own; the job's outcome does not depend on it.
    await this.store.deleteMany([this.key]).catch(() => undefined);
  }
}

function monotonicMs(): number {
  return performance.now();
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new BlocksnapError('Cancelled', 'cancelled'));
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = (): void => { clearTimeout(t); reject(new BlocksnapError('Cancelled', 'cancelled')); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
