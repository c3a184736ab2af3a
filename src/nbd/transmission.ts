/**
 * The transmission phase of one connection: reads requests, runs them against the export's
 * backend, writes replies. Requests run concurrently (replies may be out of order, as the
 * protocol allows) up to MAX_IN_FLIGHT per connection; past that the reader waits, so a client
 * cannot queue unbounded work. Each reply is written from a single synchronous stretch of code
 * (corked writes, sent as one writev without copying the data), so chunks of different replies
 * never interleave mid-message.
 *
 * A malformed request header (bad magic, a write payload over the maximum) closes the
 * connection: the byte stream cannot be resynchronised. A well-formed request that is invalid
 * (out of bounds, unknown command or flag, a write to a read-only export) gets an error reply
 * and the connection goes on.
 */
import type { Socket } from 'node:net';
import { BlocksnapError } from '../errors';
import type { ByteBudget } from './byte-budget';
import type { ByteReader } from './byte-reader';
import type { ReplyBuffers } from './reply-buffers';
import type { Extent, NbdExport, ReadPiece } from './backend';
import * as C from './constants';
import { BASE_ALLOCATION_ID, MAX_REQUEST_LENGTH, ProtocolViolation, type Negotiated } from './handshake';

const MAX_IN_FLIGHT = 16;
const SIMPLE_HEADER_SIZE = 16;
const STRUCTURED_HEADER_SIZE = 20;
/** Most descriptors in one BLOCK_STATUS reply; the client asks again for the rest. */
const MAX_EXTENTS = 1024;

/** Error value a request fails with, and the message for a structured error chunk. */
class RequestError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

export interface Request {
  flags: number;
  type: number;
  handle: Buffer;
  offset: number;
  length: number;
  payload: Buffer | null;
}

export interface TransmissionLog {
  warn(obj: object, msg?: string): void;
}

export class Transmission {
  private inFlight = 0;
  private slot: (() => void) | null = null;
  private idle: (() => void) | null = null;
  private readonly exp: NbdExport;

  constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    private readonly n: Negotiated,
    private readonly log: TransmissionLog,
    /** Shared by the server's connections: request data in flight (memory). */
    private readonly budget: ByteBudget,
    /** Shared by the server's connections: the Buffers read replies are built in. */
    private readonly buffers: ReplyBuffers,
  ) {
    this.exp = n.export;
  }

  /** Serves requests until NBD_CMD_DISC (then waits for the running ones) or the peer goes away. */
  async run(): Promise<void> {
    for (;;) {
      if (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => { this.slot = r; });
      // Replies the client is slow to read stay bounded too: stop reading requests meanwhile.
      if (this.socket.writableNeedDrain) await drained(this.socket);
      await this.budget.room();
      const req = await this.readRequest();
      if (req.type === C.NBD_CMD_DISC) {
        if (this.inFlight > 0) await new Promise<void>((r) => { this.idle = r; });
        return;
      }
      // A write's payload is already in memory; a read's reply is about to be.
      const bytes = req.type === C.NBD_CMD_WRITE || req.type === C.NBD_CMD_READ ? Math.min(req.length, MAX_REQUEST_LENGTH) : 0;
      this.budget.take(bytes);
      this.inFlight++;
      void this.serve(req).finally(() => {
        this.budget.give(bytes);
        this.inFlight--;
        const s = this.slot;
        this.slot = null;
        s?.();
        if (this.inFlight === 0 && this.idle) this.idle();
      });
    }
  }

  private async readRequest(): Promise<Request> {
    const h = await this.reader.take(C.REQUEST_HEADER_SIZE);
    if (h.readUInt32BE(0) !== C.NBD_REQUEST_MAGIC) throw new ProtocolViolation('a request does not start with NBD_REQUEST_MAGIC');
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const handle = Buffer.from(h.subarray(8, 16));
    const offset64 = h.readBigUInt64BE(16);
    const length = h.readUInt32BE(24);
    let payload: Buffer | null = null;
    if (type === C.NBD_CMD_WRITE) {
      // The payload must be consumed to stay in step; one over the maximum is a denial of service.
      if (length > MAX_REQUEST_LENGTH) throw new ProtocolViolation(`a write of ${length} bytes exceeds the ${MAX_REQUEST_LENGTH}-byte maximum`);
      payload = await this.reader.take(length);
    }
    // Offsets past 2^53 cannot be in bounds of any export; keep them out of float arithmetic.
    const offset = offset64 > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset64);
    return { flags, type, handle, offset, length, payload };
  }

  private async serve(req: Request): Promise<void> {
    try {
      this.checkFlags(req);
      switch (req.type) {
        case C.NBD_CMD_READ: return await this.read(req);
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
      throw new RequestError(errno, `range ${req.offset}+${req.length} lies beyond the end of the export (${this.exp.backend.size} bytes)`);
    }
  }

  private writable(req: Request): void {
    if (!this.exp.backend.writable) throw new RequestError(C.NBD_EPERM, 'the export is read-only');
    this.inBounds(req, C.NBD_ENOSPC);
  }

  /**
   * A read reply is built in pooled Buffers the backend reads straight into: one Buffer (header
   * and data) for a simple reply or a DF read, one per data chunk otherwise, holes as small chunks.
   */
  private async read(req: Request): Promise<void> {
    if (req.length > MAX_REQUEST_LENGTH) throw new RequestError(C.NBD_EINVAL, `a read of ${req.length} bytes exceeds the ${MAX_REQUEST_LENGTH}-byte maximum`);
    this.inBounds(req, C.NBD_EINVAL);
    if (req.length === 0) return this.ok(req);
    const pieces = this.exp.backend.layout(req.offset, req.length);
    if (!this.n.structured || (req.flags & C.NBD_CMD_FLAG_DF)) {
      const head = this.n.structured ? STRUCTURED_HEADER_SIZE + 8 : SIMPLE_HEADER_SIZE;
      const out = this.buffers.take(head + req.length);
      await this.fill([out], pieces.map((p) => ({ p, target: out, at: head + p.offset - req.offset })));
      if (this.n.structured) {
        writeStructuredHeader(out, 0, C.NBD_REPLY_FLAG_DONE, C.NBD_REPLY_TYPE_OFFSET_DATA, req.handle, 8 + req.length);
        out.writeBigUInt64BE(BigInt(req.offset), STRUCTURED_HEADER_SIZE);
      } else {
        simpleHeader(out, 0, req.handle);
      }
      this.sendPooled([out]);
      return;
    }
    const chunks = pieces.map((p, i) => {
      const flags = i === pieces.length - 1 ? C.NBD_REPLY_FLAG_DONE : 0;
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
    this.sendPooled(chunks);
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
    this.writable(req);
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
    const merged: Extent[] = [];
    for (const e of await this.exp.backend.extents(req.offset, req.length)) {
      if (e.length === 0) continue;
      const last = merged[merged.length - 1];
      if (last && last.flags === e.flags) last.length += e.length; else merged.push({ ...e });
    }
    const limit = (req.flags & C.NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS;
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
      message = e instanceof BlocksnapError ? `${e.code}: ${e.message}` : e.message;
      this.log.warn({ err: e, export: this.exp.name, type: req.type, offset: req.offset, length: req.length }, 'an NBD request failed');
    }
    if (this.n.structured) {
      const m = Buffer.from(message, 'utf8').subarray(0, C.NBD_MAX_STRING);
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

  /** Like send(); Buffers of the reply pool among the parts go back to it once written. */
  private sendPooled(parts: Buffer[]): void {
    if (this.socket.destroyed) {
      for (const p of parts) this.buffers.give(p);
      return;
    }
    this.socket.cork();
    // The callback runs once the socket is done with the Buffer, written or failed.
    for (const p of parts) this.socket.write(p, () => this.buffers.give(p));
    this.socket.uncork();
  }

  /** One reply: its parts go out in one writev (corked), never interleaved with another reply's. */
  private send(...parts: Buffer[]): void {
    if (this.socket.destroyed) return;
    if (parts.length === 1) {
      this.socket.write(parts[0]!);
      return;
    }
    this.socket.cork();
    for (const p of parts) this.socket.write(p);
    this.socket.uncork();
  }
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
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
