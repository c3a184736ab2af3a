/**
 * What the NBD server serves: an export is a name bound to a backend. The protocol layer
 * (handshake.ts, transmission.ts) knows nothing of snapshots or overlays; it validates every
 * request against `size` and the backend's capabilities before calling it, so a backend sees only
 * in-bounds, non-empty ranges.
 *
 * Contract (each implementation keeps it):
 * - `layout` says, without I/O, how [offset, offset + length) reads: pieces that tile it in
 *   order, each a run of zeros (`zero`, a hole in a structured reply) or data. `readInto` then
 *   reads a range lying inside one data piece into the caller's Buffer; it throws a
 *   BlocksnapError on failure (DigestMismatch, BlockMissing, IOError...), which the client sees
 *   as EIO with the message.
 * - `extents` describes [offset, offset + length) in order for `base:allocation`, or, once it has
 *   `max` extents, the start of it (a reply carries at most that many: walking a fragmented range
 *   past them would cost work no client sees); adjacent extents may share flags (the server
 *   merges them).
 * - A writable backend acknowledges a write only once a later `flush` will make it durable, and
 *   makes it durable before returning when `fua` is set.
 * - A backend that records instants between requests (a served copy-on-write disk's snapshot)
 *   has `writeAsOne`: a write longer than one piece is applied a piece at a time inside it, so
 *   that no instant falls between two pieces of a request that completes (the pieces of one
 *   abandoned mid-payload stay written, and the instant falls after them).
 */
export interface ReadPiece {
  offset: number;
  length: number;
  /** Reads as zeros, with no I/O. */
  zero: boolean;
}

export interface Extent {
  length: number;
  /** NBD_STATE_HOLE | NBD_STATE_ZERO bits of base:allocation. */
  flags: number;
}

export type BackendWrite = (offset: number, data: Buffer, fua: boolean) => Promise<void>;

export interface NbdBackend {
  readonly size: number;
  readonly writable: boolean;
  layout(offset: number, length: number): ReadPiece[];
  /** Fills target[at, at + length) with [offset, offset + length); the caller owns the Buffer. */
  readInto(offset: number, length: number, target: Buffer, at: number): Promise<void>;
  /** The first extents of [offset, offset + length), at most `max` of them. */
  extents(offset: number, length: number, max: number): Promise<Extent[]>;
  write?(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** Runs `fn`; every write made through the function it is given falls on one side of any instant. */
  writeAsOne?<T>(fn: (write: BackendWrite) => Promise<T>): Promise<T>;
  /** Zeros a range; `mayTrim` allows leaving a hole (NBD_CMD_FLAG_NO_HOLE not set). */
  zero?(offset: number, length: number, mayTrim: boolean, fua: boolean): Promise<void>;
  trim?(offset: number, length: number, fua: boolean): Promise<void>;
  flush?(): Promise<void>;
}

/** A connection as its export sees it. */
export interface ExportConnection {
  /** Ends it gracefully; resolves once its running requests are answered and it has closed. */
  close(reason: string): Promise<void>;
}

/** A named export as the server sees it; connections register so that stopping it can drop them. */
export interface NbdExport {
  readonly name: string;
  readonly description: string;
  readonly backend: NbdBackend;
  /** Registers a connection in transmission; returns its deregistration. */
  attach(conn: ExportConnection): () => void;
}

/** The set of exports the server looks names up in (the engine's export table). */
export interface ExportTable {
  lookup(name: string): NbdExport | undefined;
  names(): string[];
}
