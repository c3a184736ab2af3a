/**
 * Bytes of request data in flight across every connection of an NBD server: write payloads read
 * and not yet written, and read replies being assembled. Request counts alone do not bound memory
 * (16 requests of 4 MiB on each of many connections adds up), so a connection about to
 * read its next request waits while the server is over budget. The budget is soft: every
 * connection waiting when bytes come back reads one more request, so the overshoot is at most one
 * request per connection, and a single request larger than the budget can never deadlock.
 *
 * State: the bytes taken and a FIFO of waiting connections, woken as bytes are given back.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  get inFlight(): number { return this.used; }

  /** Resolves once the server is under its limit (at once if it is). */
  async room(): Promise<void> {
    while (this.used >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
  }

  take(bytes: number): void {
    this.used += bytes;
  }

  give(bytes: number): void {
    this.used -= bytes;
    while (this.used < this.limit && this.waiters.length > 0) this.waiters.shift()!();
  }
}
