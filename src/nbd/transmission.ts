/**
 * The transmission phase of one connection: reads requests, runs them against the export's
 * backend, writes replies. Requests run concurrently (replies may be out of order, as the
 * protocol allows) up to MAX_IN_FLIGHT per connection; past that the reader waits, so a client
 * cannot queue unbounded work. Each reply is written from a single synchronous stretch of code
 * (corked writes, sent as one writev without copying the data), so chunks of different replies
 * never interleave mid-message; the one reply written over several stretches (a simple read
 * longer than a piece) holds the others back until it is out.
 *
 * Memory: a READ holds up to one piece (MAX_REQUEST_LENGTH) of the server's ByteBudget from its
 * header until its reply is written to the socket; a WRITE holds its payload's bytes (at most a
 * piece) from the time they have all arrived until they are written to the backend, so a client
 * stopped mid-payload holds none of the budget, only its own input buffer (ByteReader's
 * highWater), and is dropped after stallMs. Longer ones, up to MAX_PAYLOAD, are served a piece at
 * a time within that one piece of budget; a long write holds its piece while the rest of its
 * payload arrives, so long writes together hold at most their own share of the budget
 * (`longWrites`), and the other requests keep the rest.
 *
 * A malformed request header (bad magic, a write payload over MAX_PAYLOAD) closes the
 * connection: the byte stream cannot be resynchronised. A well-formed request that is invalid
 * (out of bounds, unknown command or flag, a write to a read-only export) gets an error reply
 * and the connection goes on.
 */
import type { Socket } from 'node:net';
import { BlocksnapError } from '../errors';
import type { ByteBudget } from '../byte-budget';
import { ConnectionClosed, type ByteReader } from './byte-reader';
import type { ReplyBuffers } from './reply-buffers';
import type { BackendWrite, Extent, NbdExport, ReadPiece } from './backend';
import * as C from './constants';
import { drained } from './drained';
import { BASE_ALLOCATION_ID, MAX_PAYLOAD, MAX_REQUEST_LENGTH, ProtocolViolation, type Negotiated } from './handshake';
import { wireString } from './strings';

const MAX_IN_FLIGHT = 16;
/**
 * Budget bytes one connection may hold before it stops reading requests: four pieces, so that a
 * client that never reads its replies cannot take the whole server's budget on its own.
 */
export const CONNECTION_BYTES = 4 * MAX_REQUEST_LENGTH;
/**
 * 30 s: far longer than any client that reads at all takes to take a reply, or that sends at all
 * takes to send a payload.
 */
export const STALL_MS = 30_000;
const SIMPLE_HEADER_SIZE = 16;
const STRUCTURED_HEADER_SIZE = 20;
/** Most descriptors in one BLOCK_STATUS reply; the client asks again for the rest. */
const MAX_EXTENTS = 1024;
/** Pieces a refused write payload is read and dropped in: no large Buffer for bytes thrown away. */
const DISCARD_PIECE = 64 * 1024;

/** Error value a request fails with, and the message for a structured error chunk. */
class RequestError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

const shuttingDown = (): RequestError => new RequestError(C.NBD_ESHUTDOWN, 'the export is going away: the server is ending this connection');

export interface Request {
  flags: number;
  type: number;
  handle: Buffer;
  /** The offset, clamped to 2^53 - 1 (none that large is in bounds): for arithmetic. */
  offset: number;
  /** The offset as the client sent it: for messages. */
  sentOffset: bigint;
  length: number;
  payload: Buffer | null;
}

export interface TransmissionLog {
  warn(obj: object, msg?: string): void;
}

/**
 * The budget bytes of one request, given back exactly once: when the request ends, or, for a
 * reply that carries them (`handedOff`), once the socket has written it.
 */
class Hold {
  handedOff = false;
  private given = false;
  constructor(private readonly give: () => void) {}
  release(): void {
    if (this.given) return;
    this.given = true;
    this.give();
  }
}

export class Transmission {
  private inFlight = 0;
  /** Replies the socket has finished writing: progress, for the stall watch. */
  private repliesWritten = 0;
  /** Budget bytes this connection's requests hold. */
  private held = 0;
  /** The read loop, waiting for a request slot or for held bytes to come back. */
  private loopWaiter: (() => void) | null = null;
  private idleWaiters: Array<() => void> = [];
  private closing = false;
  /** Aborted on shutdown or close: a request waiting for budget stops waiting. */
  private readonly abort = new AbortController();
  /** Replies held back while a simple read reply longer than one piece is being written. */
  private heldBack: Array<() => void> | null = null;
  /** The socket is corked until the current tick's replies are all queued (corkForTick). */
  private corkedForTick = false;
  /** Settles when the last such reply has been written: they go out one at a time. */
  private exclusive: Promise<void> = Promise.resolve();
  private readonly exp: NbdExport;

  constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    private readonly n: Negotiated,
    private readonly log: TransmissionLog,
    /** Shared by the server's connections: request data in flight (memory). */
    private readonly budget: ByteBudget,
    /**
     * Shared too: what of `budget` writes longer than a piece may hold while the rest of their
     * payload arrives, so that clients stopped in the middle of one cannot take all of it.
     */
    private readonly longWrites: ByteBudget,
    /** Shared by the server's connections: the Buffers read replies are built in. */
    private readonly buffers: ReplyBuffers,
    /** How long shutdown() lets running requests finish before the socket is destroyed. */
    private readonly graceMs: number,
    /**
     * How long replies may sit unsent with nothing of them taken, or a write's payload take to
     * arrive (a write's whole payload, or a long one's first piece, then all the rest), before the
     * client is dropped.
     */
    private readonly stallMs: number = STALL_MS,
  ) {
    this.exp = n.export;
    socket.once('close', () => {
      this.abort.abort();
      this.wakeLoop();
    });
  }

  /** Serves requests until NBD_CMD_DISC (then waits for the running ones) or the peer goes away. */
  async run(): Promise<void> {
    const unwatch = this.watchForStall();
    try {
      await this.serveRequests();
    } finally {
      unwatch();
    }
  }

  /**
   * A client that stops taking its replies keeps their budget bytes (up to CONNECTION_BYTES), and
   * a few such clients would leave nothing for the others: one whose replies have sat unsent for
   * stallMs with none of them written meanwhile is dropped, which gives its bytes back.
   */
  private watchForStall(): () => void {
    let seen = this.repliesWritten;
    let since = Date.now();
    const timer = setInterval(() => {
      if (this.repliesWritten !== seen || this.socket.writableLength === 0) {
        seen = this.repliesWritten;
        since = Date.now();
      } else if (Date.now() - since >= this.stallMs) {
        this.log.warn({ export: this.exp.name, unsentBytes: this.socket.writableLength, heldBytes: this.held },
          'an NBD client has taken none of its replies for too long: closing the connection');
        this.socket.destroy();
      }
    }, Math.max(10, Math.min(5_000, this.stallMs / 4)));
    timer.unref();
    return () => clearInterval(timer);
  }

  private async serveRequests(): Promise<void> {
    for (;;) {
      while (this.inFlight >= MAX_IN_FLIGHT || this.held >= CONNECTION_BYTES) {
        if (this.socket.destroyed) throw new ConnectionClosed();
        await new Promise<void>((r) => { this.loopWaiter = r; });
      }
      // Replies the client is slow to read stay bounded too: stop reading requests meanwhile.
      if (this.socket.writableNeedDrain) await drained(this.socket);
      const req = await this.readHeader();
      if (req.type === C.NBD_CMD_DISC) {
        await this.idle();
        return;
      }
      if (this.closing) {
        await this.refuse(req);
        continue;
      }
      if (req.type === C.NBD_CMD_WRITE && req.length > MAX_REQUEST_LENGTH) {
        // Its payload comes off the socket a piece at a time, and only this loop reads the socket.
        await this.streamedWrite(req);
        continue;
      }
      if (req.type === C.NBD_CMD_WRITE) await this.arrival(req.length, Date.now() + this.stallMs);
      const hold = await this.hold(budgetBytes(req));
      if (hold === null) {
        if (this.socket.destroyed) throw new ConnectionClosed();
        await this.refuse(req);
        continue;
      }
      this.inFlight++;
      if (req.type === C.NBD_CMD_WRITE) {
        // Here already (arrival), so taken at once: nothing the client does can fail it now.
        req.payload = await this.reader.take(req.length);
        if (this.closing) {
          this.fail(req, shuttingDown());
          this.finished(hold);
          continue;
        }
      }
      void this.serve(req, hold).finally(() => this.finished(hold));
    }
  }

  /**
   * Takes `bytes` of the budget for a request once they fit, as this connection's; null (nothing
   * taken) when the connection closes or shuts down first: a request granted as the shutdown
   * began is not run either, so nothing reaches the backend after it.
   */
  private async hold(bytes: number): Promise<Hold | null> {
    if (this.closing) return null;
    if (bytes > 0 && !await this.budget.acquire(bytes, this.abort.signal)) return null;
    if (this.closing) {
      this.budget.release(bytes);
      return null;
    }
    this.held += bytes;
    return new Hold(() => {
      this.budget.release(bytes);
      this.held -= bytes;
      this.wakeLoop();
    });
  }

  /**
   * Ends the connection from the server's side (its export stopped, the server is closing), as
   * the protocol asks: requests read from now on are not run but answered NBD_ESHUTDOWN, those
   * running finish and are answered, then the socket is closed. Bounded: after graceMs the socket
   * is destroyed whatever still runs. Resolves once the socket has closed.
   */
  shutdown(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.abort.abort();
      this.wakeLoop();
      const timer = setTimeout(() => this.socket.destroy(), this.graceMs);
      this.socket.once('close', () => clearTimeout(timer));
      void this.idle().then(() => this.socket.destroySoon());
    }
    return new Promise((resolve) => {
      if (this.socket.closed) resolve();
      else this.socket.once('close', () => resolve());
    });
  }

  private finished(hold: Hold | null): void {
    this.inFlight--;
    if (hold && !hold.handedOff) hold.release();
    this.wakeLoop();
    if (this.inFlight === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  private wakeLoop(): void {
    const w = this.loopWaiter;
    this.loopWaiter = null;
    w?.();
  }

  private async idle(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private async readHeader(): Promise<Request> {
    const h = await this.reader.take(C.REQUEST_HEADER_SIZE);
    if (h.readUInt32BE(0) !== C.NBD_REQUEST_MAGIC) throw new ProtocolViolation('a request does not start with NBD_REQUEST_MAGIC');
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const handle = Buffer.from(h.subarray(8, 16));
    const offset64 = h.readBigUInt64BE(16);
    const length = h.readUInt32BE(24);
    // The payload must be consumed to stay in step; one over 2^25 may be taken for a denial of service.
    if (type === C.NBD_CMD_WRITE && length > MAX_PAYLOAD) throw new ProtocolViolation(`a write of ${length} bytes exceeds the ${MAX_PAYLOAD}-byte maximum`);
    // Offsets past 2^53 cannot be in bounds of any export; keep them out of float arithmetic.
    const offset = offset64 > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset64);
    return { flags, type, handle, offset, sentOffset: offset64, length, payload: null };
  }

  /** Answers a request read while the connection shuts down, without running it. */
  private async refuse(req: Request): Promise<void> {
    if (req.type === C.NBD_CMD_WRITE) await this.discard(req.length);
    this.fail(req, shuttingDown());
  }

  private async discard(length: number): Promise<void> {
    for (let left = length; left > 0;) {
      const n = Math.min(left, DISCARD_PIECE);
      await this.reader.take(n);
      left -= n;
    }
  }

  /**
   * A write longer than one piece. Each piece of its payload is written to the backend before the
   * next is taken off the socket, so it holds one piece of memory whatever its length. A client
   * gone mid-payload may leave the pieces before the cut written: the write was never
   * acknowledged. Once the connection shuts down the rest of the payload is dropped.
   *
   * The pieces go through the backend's `writeAsOne`, so a snapshot's instant never falls between
   * two pieces of a request that completes. Of one whose client is gone mid-payload, the pieces
   * that arrived stay written and an instant waiting for it falls after them, as a disk that lost
   * power mid-write may hold part of it. The first piece has arrived before that,
   * so the instant waits only for a payload already arriving; the rest of it must arrive within
   * stallMs, or the connection is closed: a client stopped or crawling mid-payload must not hold
   * snapshots off, nor the requests of every other client that wait behind a closing gate. Its
   * piece of budget is held meanwhile (taking budget inside the gate could wait for requests that
   * wait for the gate), from the long writes' share, so that clients stopped there leave the rest
   * of the budget to the others.
   */
  private async streamedWrite(req: Request): Promise<void> {
    try {
      this.checkFlags(req);
      this.writable(req);
    } catch (err) {
      await this.discard(req.length);
      this.fail(req, err);
      return;
    }
    await this.arrival(MAX_REQUEST_LENGTH, Date.now() + this.stallMs);
    const shared = await this.longWrites.acquire(MAX_REQUEST_LENGTH, this.abort.signal);
    const hold = shared ? await this.hold(MAX_REQUEST_LENGTH) : null;
    if (hold === null) {
      if (shared) this.longWrites.release(MAX_REQUEST_LENGTH);
      if (this.socket.destroyed) throw new ConnectionClosed();
      await this.refuse(req);
      return;
    }
    this.inFlight++;
    try {
      await this.writePieces(req);
    } finally {
      this.finished(hold);
      this.longWrites.release(MAX_REQUEST_LENGTH);
    }
  }

  private async writePieces(req: Request): Promise<void> {
    const fua = (req.flags & C.NBD_CMD_FLAG_FUA) !== 0;
    const backend = this.exp.backend;
    let piece: Buffer | null = await this.reader.take(MAX_REQUEST_LENGTH);
    let error: unknown = null;
    let done = 0;
    const writeAll = async (write: BackendWrite): Promise<void> => {
      // One deadline for the whole rest, not one per piece: seven pieces each just inside a
      // per-piece limit would hold the gate for seven times that.
      const deadline = Date.now() + this.stallMs;
      while (done < req.length && error === null) {
        const n = Math.min(MAX_REQUEST_LENGTH, req.length - done);
        if (piece === null) {
          await this.arrival(n, deadline);
          piece = await this.reader.take(n);
        }
        if (this.closing) {
          error = shuttingDown();
        } else {
          try {
            await write(req.offset + done, piece, fua);
          } catch (err) {
            error = err;
          }
        }
        piece = null;
        done += n;
      }
    };
    if (backend.writeAsOne) await backend.writeAsOne(writeAll);
    else await writeAll((offset, data, f) => backend.write!(offset, data, f));
    // What follows a failed piece is read and dropped outside writeAsOne: it holds nothing up.
    if (done < req.length) await this.discard(req.length - done);
    if (error !== null) this.fail(req, error);
    else this.ok(req);
  }

  /**
   * Waits for the next n bytes of a write's payload to be here (not taken: ByteReader.arrived); a
   * client that has not sent them by `deadline` (ms) is dropped, which is logged.
   */
  private async arrival(n: number, deadline: number): Promise<void> {
    // The common case, on every write: the payload came with its header, and no timer is armed.
    if (this.reader.bufferedBytes >= n) return;
    const timer = setTimeout(() => {
      this.log.warn({ export: this.exp.name, awaitedBytes: n, receivedBytes: this.reader.bufferedBytes },
        'an NBD client took too long to send a write\'s payload: closing the connection');
      this.socket.destroy();
    }, Math.max(0, deadline - Date.now()));
    try {
      await this.reader.arrived(n);
    } finally {
      clearTimeout(timer);
    }
  }

  private async serve(req: Request, hold: Hold): Promise<void> {
    try {
      this.checkFlags(req);
      switch (req.type) {
        case C.NBD_CMD_READ: return await this.read(req, hold);
        case C.NBD_CMD_WRITE: return await this.write(req);
        case C.NBD_CMD_FLUSH:
          await this.exp.backend.flush?.();
          return this.ok(req);
        case C.NBD_CMD_TRIM: return await this.trim(req);
        case C.NBD_CMD_WRITE_ZEROES: return await this.writeZeroes(req);
        case C.NBD_CMD_BLOCK_STATUS: return await this.blockStatus(req);
        default: throw new RequestError(C.NBD_EINVAL, `command ${req.type} is not supported`);
      }
    } catch (err) {
      this.fail(req, err);
    }
  }

  /** Rejects flags the command does not take or the transmission flags did not advertise. */
  private checkFlags(req: Request): void {
    let allowed = 0;
    if (this.n.transmissionFlags & C.NBD_FLAG_SEND_FUA) allowed |= C.NBD_CMD_FLAG_FUA;
    if (req.type === C.NBD_CMD_READ && (this.n.transmissionFlags & C.NBD_FLAG_SEND_DF)) allowed |= C.NBD_CMD_FLAG_DF;
    if (req.type === C.NBD_CMD_WRITE_ZEROES) allowed |= C.NBD_CMD_FLAG_NO_HOLE;
    if (req.type === C.NBD_CMD_BLOCK_STATUS) allowed |= C.NBD_CMD_FLAG_REQ_ONE;
    if ((req.flags & ~allowed) !== 0) throw new RequestError(C.NBD_EINVAL, `command flags 0x${req.flags.toString(16)} are not valid for command ${req.type}`);
  }

  private inBounds(req: Request, errno: number): void {
    if (req.offset + req.length > this.exp.backend.size) {
      throw new RequestError(errno, `range ${req.sentOffset}+${req.length} lies beyond the end of the export (${this.exp.backend.size} bytes)`);
    }
  }

  /** A request that changes the export: EPERM on a read-only one, `outOfBounds` past its end. */
  private writable(req: Request, outOfBounds = C.NBD_ENOSPC): void {
    if (!this.exp.backend.writable) throw new RequestError(C.NBD_EPERM, 'the export is read-only');
    this.inBounds(req, outOfBounds);
  }

  /**
   * A read reply is built in pooled Buffers the backend reads straight into: one Buffer (header
   * and data) for a simple reply or a DF read, one per data chunk otherwise, holes as small
   * chunks. Its budget goes back once the socket has written it.
   */
  private async read(req: Request, hold: Hold): Promise<void> {
    if (req.length > MAX_PAYLOAD) {
      // A simple reply cannot be split, and EOVERFLOW is only for structured replies.
      throw new RequestError(this.n.structured ? C.NBD_EOVERFLOW : C.NBD_EINVAL, `a read of ${req.length} bytes exceeds the ${MAX_PAYLOAD}-byte maximum`);
    }
    const df = this.n.structured && (req.flags & C.NBD_CMD_FLAG_DF) !== 0;
    if (df && req.length > MAX_REQUEST_LENGTH) {
      throw new RequestError(C.NBD_EOVERFLOW, `a read of ${req.length} bytes cannot be sent unfragmented (at most ${MAX_REQUEST_LENGTH})`);
    }
    this.inBounds(req, C.NBD_EINVAL);
    if (req.length === 0) return this.ok(req);
    if (req.length > MAX_REQUEST_LENGTH) return this.n.structured ? this.readChunked(req) : this.readStreamed(req);
    if (!this.n.structured || df) {
      const head = this.n.structured ? STRUCTURED_HEADER_SIZE + 8 : SIMPLE_HEADER_SIZE;
      const out = await this.filled(head, req.offset, req.length);
      if (this.n.structured) {
        writeStructuredHeader(out, 0, C.NBD_REPLY_FLAG_DONE, C.NBD_REPLY_TYPE_OFFSET_DATA, req.handle, 8 + req.length);
        out.writeBigUInt64BE(BigInt(req.offset), STRUCTURED_HEADER_SIZE);
      } else {
        simpleHeader(out, 0, req.handle);
      }
      this.sendPooled([out], hold);
      return;
    }
    this.sendPooled(await this.chunks(req, req.offset, req.length, true), hold);
  }

  /**
   * A structured read longer than one piece, a piece at a time: each piece's chunks are written
   * before the next piece is read, so the read holds one piece of memory (its budget).
   */
  private async readChunked(req: Request): Promise<void> {
    for (let at = 0; at < req.length; at += MAX_REQUEST_LENGTH) {
      if (this.socket.destroyed) return;
      const n = Math.min(MAX_REQUEST_LENGTH, req.length - at);
      const chunks = await this.chunks(req, req.offset + at, n, at + n === req.length);
      await new Promise<void>((resolve) => this.sendPooled(chunks, null, resolve));
    }
  }

  /**
   * A simple read longer than one piece. Its reply is one message (header, then every byte), so
   * other replies are held back until it is written, and it is filled and written a piece at a
   * time. The first piece is read before the header goes out, so a failure there is an ordinary
   * error reply; after the header has said success, a failure can only be a hard disconnect, as
   * the protocol requires.
   */
  private async readStreamed(req: Request): Promise<void> {
    const first = await this.filled(SIMPLE_HEADER_SIZE, req.offset, MAX_REQUEST_LENGTH);
    simpleHeader(first, 0, req.handle);
    const done = await this.exclusiveTurn();
    try {
      await this.written([first]);
      for (let at = MAX_REQUEST_LENGTH; at < req.length; at += MAX_REQUEST_LENGTH) {
        if (this.socket.destroyed) return;
        const n = Math.min(MAX_REQUEST_LENGTH, req.length - at);
        let piece: Buffer;
        try {
          piece = await this.filled(0, req.offset + at, n);
        } catch (err) {
          this.log.warn({ err, export: this.exp.name, offset: req.offset, length: req.length },
            'an NBD read failed after its reply header was sent: closing the connection');
          this.socket.destroy();
          return;
        }
        await this.written([piece]);
      }
    } finally {
      done();
    }
  }

  /** Waits for the previous long simple reply to be out; holds other replies back until the returned function runs. */
  private async exclusiveTurn(): Promise<() => void> {
    const before = this.exclusive;
    let settle!: () => void;
    this.exclusive = new Promise<void>((r) => { settle = r; });
    await before;
    this.heldBack = [];
    return () => {
      const q = this.heldBack ?? [];
      this.heldBack = null;
      for (const f of q) f();
      settle();
    };
  }

  /** A pooled Buffer: `head` bytes left to the caller, then [offset, offset + length) of the export. */
  private async filled(head: number, offset: number, length: number): Promise<Buffer> {
    const out = this.buffers.take(head + length);
    await this.fill([out], this.exp.backend.layout(offset, length).map((p) => ({ p, target: out, at: head + p.offset - offset })));
    return out;
  }

  /** Data and hole chunks of [offset, offset + length) of a structured read; the last is DONE if `last`. */
  private async chunks(req: Request, offset: number, length: number, last: boolean): Promise<Buffer[]> {
    const pieces = this.exp.backend.layout(offset, length);
    const chunks = pieces.map((p, i) => {
      const flags = last && i === pieces.length - 1 ? C.NBD_REPLY_FLAG_DONE : 0;
      if (p.zero) {
        const hole = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 12);
        writeStructuredHeader(hole, 0, flags, C.NBD_REPLY_TYPE_OFFSET_HOLE, req.handle, 12);
        hole.writeBigUInt64BE(BigInt(p.offset), STRUCTURED_HEADER_SIZE);
        hole.writeUInt32BE(p.length, STRUCTURED_HEADER_SIZE + 8);
        return hole;
      }
      const chunk = this.buffers.take(STRUCTURED_HEADER_SIZE + 8 + p.length);
      writeStructuredHeader(chunk, 0, flags, C.NBD_REPLY_TYPE_OFFSET_DATA, req.handle, 8 + p.length);
      chunk.writeBigUInt64BE(BigInt(p.offset), STRUCTURED_HEADER_SIZE);
      return chunk;
    });
    const pooled = chunks.filter((_, i) => !pieces[i]!.zero);
    await this.fill(pooled, pieces.flatMap((p, i) => (p.zero ? [] : [{ p, target: chunks[i]!, at: STRUCTURED_HEADER_SIZE + 8 }])));
    return chunks;
  }

  /**
   * Reads every data piece into its place and zero-fills the rest. Waits for every read to settle
   * before failing: a read still running writes into a Buffer, which must not go back to the pool
   * (and to another reply) before it stops.
   */
  private async fill(pooled: Buffer[], places: Array<{ p: ReadPiece; target: Buffer; at: number }>): Promise<void> {
    const settled = await Promise.allSettled(places.map(({ p, target, at }) => {
      if (!p.zero) return this.exp.backend.readInto(p.offset, p.length, target, at);
      target.fill(0, at, at + p.length);
      return undefined;
    }));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const b of pooled) this.buffers.give(b);
      throw failed.reason;
    }
  }

  private async write(req: Request): Promise<void> {
    this.writable(req);
    if (req.length > 0) await this.exp.backend.write!(req.offset, req.payload!, (req.flags & C.NBD_CMD_FLAG_FUA) !== 0);
    this.ok(req);
  }

  private async trim(req: Request): Promise<void> {
    // Past the end a trim is EINVAL, like a read (the protocol's SHOULD); ENOSPC is for writes.
    this.writable(req, C.NBD_EINVAL);
    if (!this.exp.backend.trim) throw new RequestError(C.NBD_EINVAL, 'trim is not supported by this export');
    if (req.length > 0) await this.exp.backend.trim(req.offset, req.length, (req.flags & C.NBD_CMD_FLAG_FUA) !== 0);
    this.ok(req);
  }

  private async writeZeroes(req: Request): Promise<void> {
    this.writable(req);
    if (!this.exp.backend.zero) throw new RequestError(C.NBD_EINVAL, 'write zeroes is not supported by this export');
    if (req.length > 0) {
      await this.exp.backend.zero(req.offset, req.length, (req.flags & C.NBD_CMD_FLAG_NO_HOLE) === 0, (req.flags & C.NBD_CMD_FLAG_FUA) !== 0);
    }
    this.ok(req);
  }

  private async blockStatus(req: Request): Promise<void> {
    if (!this.n.structured || !this.n.blockStatus) throw new RequestError(C.NBD_EINVAL, 'no metadata context was selected for this export');
    if (req.length === 0) throw new RequestError(C.NBD_EINVAL, 'a block status request needs a non-zero length');
    this.inBounds(req, C.NBD_EINVAL);
    // Asked for no more than the reply carries: a fragmented range costs what is sent, not its size.
    const limit = (req.flags & C.NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS;
    const merged: Extent[] = [];
    for (const e of await this.exp.backend.extents(req.offset, req.length, limit)) {
      if (e.length === 0) continue;
      const last = merged[merged.length - 1];
      if (last && last.flags === e.flags) last.length += e.length; else merged.push({ ...e });
    }
    const list = merged.slice(0, limit);
    const payload = Buffer.alloc(4 + 8 * list.length);
    payload.writeUInt32BE(BASE_ALLOCATION_ID, 0);
    list.forEach((e, i) => {
      payload.writeUInt32BE(e.length, 4 + 8 * i);
      payload.writeUInt32BE(e.flags, 8 + 8 * i);
    });
    this.send(Buffer.concat([structuredHeader(C.NBD_REPLY_FLAG_DONE, C.NBD_REPLY_TYPE_BLOCK_STATUS, req.handle, payload.length), payload]));
  }

  private ok(req: Request): void {
    if (this.n.structured && req.type === C.NBD_CMD_READ) {
      this.send(structuredHeader(C.NBD_REPLY_FLAG_DONE, C.NBD_REPLY_TYPE_NONE, req.handle, 0));
      return;
    }
    const out = Buffer.alloc(16);
    simpleHeader(out, 0, req.handle);
    this.send(out);
  }

  private fail(req: Request, err: unknown): void {
    let errno = C.NBD_EIO;
    let message: string;
    if (err instanceof RequestError) {
      errno = err.errno;
      message = err.message;
    } else {
      const e = err instanceof Error ? err : new Error(String(err));
      if (e instanceof BlocksnapError && e.code === 'NoSpace') errno = C.NBD_ENOSPC;
      // The backend may be closing under it (a stopped export): the protocol's answer is ESHUTDOWN.
      if (this.closing) errno = C.NBD_ESHUTDOWN;
      message = e instanceof BlocksnapError ? `${e.code}: ${e.message}` : e.message;
      this.log.warn({ err: e, export: this.exp.name, type: req.type, offset: req.offset, length: req.length }, 'an NBD request failed');
    }
    if (this.n.structured) {
      const m = wireString(message);
      const p = Buffer.alloc(6 + m.length);
      p.writeUInt32BE(errno, 0);
      p.writeUInt16BE(m.length, 4);
      m.copy(p, 6);
      this.send(Buffer.concat([structuredHeader(C.NBD_REPLY_FLAG_DONE, C.NBD_REPLY_TYPE_ERROR, req.handle, p.length), p]));
      return;
    }
    const out = Buffer.alloc(16);
    simpleHeader(out, errno, req.handle);
    this.send(out);
  }

  /**
   * Like send(); Buffers of the reply pool among the parts go back to it once written, and so do
   * the request's budget bytes (`hold`) and `onWritten`, once the last part is.
   */
  private sendPooled(parts: Buffer[], hold: Hold | null, onWritten?: () => void): void {
    if (hold) hold.handedOff = true;
    const emit = (): void => {
      if (this.socket.destroyed) {
        for (const p of parts) this.buffers.give(p);
        hold?.release();
        onWritten?.();
        return;
      }
      this.corkForTick();
      this.socket.cork();
      // The callback runs once the socket is done with the Buffer, written or failed.
      parts.forEach((p, i) => this.socket.write(p, () => {
        this.buffers.give(p);
        this.repliesWritten++;
        if (i === parts.length - 1) {
          hold?.release();
          onWritten?.();
        }
      }));
      this.socket.uncork();
    };
    if (this.heldBack) this.heldBack.push(emit);
    else emit();
  }

  /** Writes pooled Buffers ahead of held-back replies (the long simple reply's own pieces); resolves once written. */
  private written(parts: Buffer[]): Promise<void> {
    const held = this.heldBack;
    this.heldBack = null;
    try {
      return new Promise<void>((resolve) => this.sendPooled(parts, null, resolve));
    } finally {
      this.heldBack = held;
    }
  }

  /**
   * Holds the socket's writes until the replies made in this tick are all queued, then sends them
   * in one writev. Requests finish in bursts (a batch of writes completes at once, then each
   * request's continuation makes its reply): written one by one, a burst of 16 4 KiB writes cost
   * 16 system calls where one does (each 2-3 µs on a VM). The uncork runs from process.nextTick,
   * after the promise jobs that are making replies now, before any I/O is polled: no reply waits
   * for later work.
   */
  private corkForTick(): void {
    if (this.corkedForTick) return;
    this.corkedForTick = true;
    this.socket.cork();
    process.nextTick(() => {
      this.corkedForTick = false;
      this.socket.uncork();
    });
  }

  /** One reply: its parts go out in one writev (corked), never interleaved with another reply's. */
  private send(...parts: Buffer[]): void {
    const written = (): void => { this.repliesWritten++; };
    const emit = (): void => {
      if (this.socket.destroyed) return;
      this.corkForTick();
      if (parts.length === 1) {
        this.socket.write(parts[0]!, written);
        return;
      }
      this.socket.cork();
      for (const p of parts) this.socket.write(p, written);
      this.socket.uncork();
    };
    if (this.heldBack) this.heldBack.push(emit);
    else emit();
  }
}

/** Budget bytes a request holds: its payload in memory, or its reply's, at most one piece. */
function budgetBytes(req: Request): number {
  if (req.type === C.NBD_CMD_WRITE) return Math.min(req.length, MAX_REQUEST_LENGTH);
  if (req.type === C.NBD_CMD_READ && req.length <= MAX_PAYLOAD) return Math.min(req.length, MAX_REQUEST_LENGTH);
  return 0;
}

function simpleHeader(out: Buffer, errno: number, handle: Buffer): void {
  out.writeUInt32BE(C.NBD_SIMPLE_REPLY_MAGIC, 0);
  out.writeUInt32BE(errno, 4);
  handle.copy(out, 8);
}

function structuredHeader(flags: number, type: number, handle: Buffer, length: number): Buffer {
  const h = Buffer.alloc(STRUCTURED_HEADER_SIZE);
  writeStructuredHeader(h, 0, flags, type, handle, length);
  return h;
}

function writeStructuredHeader(out: Buffer, at: number, flags: number, type: number, handle: Buffer, length: number): void {
  out.writeUInt32BE(C.NBD_STRUCTURED_REPLY_MAGIC, at);
  out.writeUInt16BE(flags, at + 4);
  out.writeUInt16BE(type, at + 6);
  handle.copy(out, at + 8);
  out.writeUInt32BE(length, at + 16);
}
