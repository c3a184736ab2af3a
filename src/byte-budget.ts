/**
 * Bytes of request data held across every connection of a server. Request counts alone do not
 * bound memory (16 requests of 4 MiB on each of many connections adds up), so a connection that
 * has read a request's length waits here, before it reads the rest, until the bytes fit under
 * the limit. The NBD server holds write payloads and read replies with it (a reply the client
 * does not read still holds its bytes); the control socket holds large request frames while they
 * arrive.
 *
 * The limit is hard: bytes are granted first come, first served, and only while the total stays
 * within it. A single request larger than the whole limit is granted once nothing else is held,
 * so it cannot wait forever.
 *
 * State: the bytes held and a FIFO of waiting requests, granted as bytes are given back.
 */
interface Waiter {
  bytes: number;
  grant(ok: boolean): void;
}

export class ByteBudget {
  private used = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly limit: number) {}

  get inFlight(): number { return this.used; }
  get waiting(): number { return this.waiters.length; }

  /**
   * Takes `bytes` once they fit; resolves true then, or false (nothing taken) when `signal`
   * aborts first.
   */
  acquire(bytes: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.tryAcquire(bytes)) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        bytes,
        grant: (ok) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ok);
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(w);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        w.grant(false);
        // The head may have been what kept smaller requests behind it waiting.
        this.wake();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  /** Takes `bytes` now if they fit and nobody waits before them; false (nothing taken) otherwise. */
  tryAcquire(bytes: number): boolean {
    if (this.waiters.length > 0 || !this.fits(bytes)) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used -= bytes;
    this.wake();
  }

  private fits(bytes: number): boolean {
    return this.used + bytes <= this.limit || this.used === 0;
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.bytes)) {
      const w = this.waiters.shift()!;
      this.used += w.bytes;
      w.grant(true);
    }
  }
}
