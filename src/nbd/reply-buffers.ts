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
 */

const MIN_CLASS = 4096;
/** Room for reply headers beyond a power of two, so that a 256 KiB read fits a 256 KiB class. */
const HEADROOM = 64;

export class ReplyBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly ours = new WeakSet<ArrayBuffer>();
  private idleBytes = 0;

  constructor(readonly maxIdleBytes: number) {}

  /** The bytes held by free Buffers. */
  get idle(): number { return this.idleBytes; }

  /** A Buffer of exactly `length` bytes, uninitialised. */
  take(length: number): Buffer {
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
  }
}

function classOf(length: number): number {
  let c = MIN_CLASS;
  while (c + HEADROOM < length) c *= 2;
  return c + HEADROOM;
}
