/**
 * A pool of the Buffers NBD read replies are built in, shared by a server's connections.
 *
 * A read reply is one Buffer: the reply header, then the data the backend reads straight into it.
 * Allocating that Buffer per request made garbage collection a large share of the daemon's time
 * under sequential reads (each one is external memory V8 must account for and reclaim), so
 * replies take a Buffer from here and give it back once the socket has written it.
 *
 * State: free Buffers by capacity class (powers of two from 4 KiB, plus 64 bytes for headers), and the bytes they hold,
 * capped at `maxIdleBytes` (past it a returned Buffer is left to the GC). A Buffer taken is
 * either given back or dropped: a reply whose socket died before writing simply never returns
 * its Buffer, which costs one allocation later, nothing else. Only Buffers this pool made are
 * taken back (tracked by their ArrayBuffer), so a stray give cannot hand out foreign memory.
 * A pool that nothing took from or gave to for `releaseAfterMs` lets all its free Buffers go, as
 * the native buffer pool unmaps its own after 5 s idle (core/aligned_buffer.h): up to 32 MiB kept
 * for a burst of reads that ended long ago would stay in an idle daemon's RSS for good.
 */

const MIN_CLASS = 4096;
/** Room for reply headers beyond a power of two, so that a 256 KiB read fits a 256 KiB class. */
const HEADROOM = 64;

/** How long the pool keeps free Buffers nothing uses: the native buffer pool's period. */
export const REPLY_BUFFERS_RELEASE_MS = 5_000;

export class ReplyBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly ours = new WeakSet<ArrayBuffer>();
  private idleBytes = 0;
  /** Armed while free Buffers are kept; a flag rather than a timestamp per call keeps take() cheap. */
  private releaseTimer: NodeJS.Timeout | null = null;
  private usedSinceCheck = false;

  constructor(readonly maxIdleBytes: number, readonly releaseAfterMs: number = REPLY_BUFFERS_RELEASE_MS) {}

  /** The bytes held by free Buffers. */
  get idle(): number { return this.idleBytes; }

  /** A Buffer of exactly `length` bytes, uninitialised. */
  take(length: number): Buffer {
    this.usedSinceCheck = true;
    const capacity = classOf(length);
    const list = this.free.get(capacity);
    const reused = list?.pop();
    if (reused) {
      this.idleBytes -= capacity;
      return Buffer.from(reused, 0, length);
    }
    const fresh = Buffer.allocUnsafeSlow(capacity);
    this.ours.add(fresh.buffer);
    return fresh.subarray(0, length);
  }

  /** Returns a Buffer from take() once nothing reads or writes it any more. */
  give(buf: Buffer): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || !this.ours.has(ab) || buf.byteOffset !== 0) return;
    if (this.idleBytes + ab.byteLength > this.maxIdleBytes) return;
    // A Buffer given twice would be handed to two replies at once.
    const list = this.free.get(ab.byteLength) ?? [];
    if (list.includes(ab)) return;
    list.push(ab);
    this.free.set(ab.byteLength, list);
    this.idleBytes += ab.byteLength;
    this.usedSinceCheck = true;
    this.armRelease();
  }

  /** Lets every free Buffer go to the garbage collector now. */
  release(): void {
    this.free.clear();
    this.idleBytes = 0;
    if (this.releaseTimer !== null) clearTimeout(this.releaseTimer);
    this.releaseTimer = null;
  }

  // Checked once a period, not per call: the Buffers go between one and two periods after the
  // last use.
  private armRelease(): void {
    if (this.releaseTimer !== null) return;
    this.usedSinceCheck = false;
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = null;
      if (this.usedSinceCheck) this.armRelease();
      else this.release();
    }, this.releaseAfterMs);
    // Free Buffers never keep the process alive.
    this.releaseTimer.unref();
  }
}

function classOf(length: number): number {
  let c = MIN_CLASS;
  while (c + HEADROOM < length) c *= 2;
  return c + HEADROOM;
}
