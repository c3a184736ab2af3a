/**
 * Exact-length reads from a socket: `take(n)` resolves with the next n bytes, in order. The NBD
 * wire has no framing beyond fixed headers and declared lengths, so the protocol code reads
 * "28 bytes of header, then `length` bytes of payload" and never sees chunk boundaries.
 *
 * Flow control: bytes not yet asked for are buffered up to `highWater`; beyond it the socket is
 * paused, so a client that pipelines faster than the backend answers cannot grow the daemon's
 * memory. A take larger than highWater resumes the socket until it is satisfied.
 *
 * `arrived(n)` waits for bytes without taking them: the server takes memory budget for a write's
 * payload only once it is here, so a client that stops mid-payload holds none of it.
 */
import type { Socket } from 'node:net';

export class ConnectionClosed extends Error {
  constructor() {
    super('the connection closed');
  }
}

export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want = 0;
  /** A take (`take`: resolves with the bytes) or an arrived (resolves with nothing taken). */
  private waiter: { take: boolean; resolve: (b: Buffer | null) => void; reject: (e: Error) => void } | null = null;
  private ended = false;

  constructor(private readonly socket: Socket, readonly highWater = 4 * 1024 * 1024) {
    socket.on('data', (c: Buffer) => this.push(c));
    const end = (): void => this.finish();
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  get bufferedBytes(): number { return this.buffered; }

  /** The next n bytes; rejects with ConnectionClosed when the peer goes away first. */
  take(n: number): Promise<Buffer> {
    // A take resolves with the bytes (wait's null is for arrived); no async wrapper on the hot path.
    return this.wait(n, true) as Promise<Buffer>;
  }

  /**
   * Resolves once the next n bytes (at most highWater: the socket is not paused before they are
   * all here) have arrived, leaving them to a take; rejects with ConnectionClosed when the peer
   * goes away first.
   */
  async arrived(n: number): Promise<void> {
    if (n > this.highWater) throw new Error(`ByteReader.arrived(${n}) asks for more than the ${this.highWater} bytes buffered`);
    await this.wait(n, false);
  }

  private wait(n: number, take: boolean): Promise<Buffer | null> {
    if (this.waiter) throw new Error('ByteReader waits are not reentrant');
    if (this.buffered >= n) return Promise.resolve(take ? this.consume(n) : null);
    if (this.ended) return Promise.reject(new ConnectionClosed());
    this.want = n;
    if (this.socket.isPaused()) this.socket.resume();
    return new Promise((resolve, reject) => { this.waiter = { take, resolve, reject }; });
  }

  private push(c: Buffer): void {
    this.chunks.push(c);
    this.buffered += c.length;
    if (this.waiter && this.buffered >= this.want) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(w.take ? this.consume(this.want) : null);
    }
    if (!this.waiter && this.buffered >= this.highWater) this.socket.pause();
  }

  private consume(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0]!;
    if (n === 0) {
      out = Buffer.alloc(0);
    } else if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift(); else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift(); else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.buffered < this.highWater && this.socket.isPaused() && !this.ended) this.socket.resume();
    return out;
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(new ConnectionClosed());
    }
  }
}
