/**
 * Wire framing. Every message in either direction is one frame:
 *
 *   0  4  payload length N, unsigned 32-bit big-endian
 *   4  N  one msgpack value (a map)
 *
 * Length-prefixing (rather than relying on msgpack's self-delimiting) lets a reader reject an
 * oversized message from its first four bytes, before buffering any of it, and keeps a decoding
 * error inside one frame. The decoder is incremental because a stream socket hands out arbitrary
 * slices: one frame may arrive in many chunks and one chunk may hold many frames.
 */
import { BlocksnapError } from '../../errors';

export const FRAME_HEADER_BYTES = 4;
/** Largest request the daemon accepts unless configured otherwise. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;
/** The header is a uint32; nothing larger can be framed at all. */
export const ABSOLUTE_MAX_FRAME_BYTES = 0xffff_ffff;

/** Prefixes a msgpack payload with its length. One buffer, so one write and no interleaving. */
export function frame(payload: Uint8Array): Buffer {
  if (payload.length > ABSOLUTE_MAX_FRAME_BYTES) {
    throw new BlocksnapError('FrameTooLarge', `a frame of ${payload.length} bytes exceeds the 32-bit length prefix`);
  }
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Splits a byte stream into frame payloads. After it throws (FrameTooLarge), the stream position
 * is unknown, so the decoder refuses further input: the caller must close the connection.
 */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Payload length of the frame being assembled, once its header is complete. */
  private expected = -1;
  private failed = false;

  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > ABSOLUTE_MAX_FRAME_BYTES) {
      throw new BlocksnapError('InvalidArgument', `maxFrameBytes must be an integer from 1 to ${ABSOLUTE_MAX_FRAME_BYTES}`);
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /**
   * Payload length of the frame being assembled once its header has been taken by next(), else
   * -1: a reader can account for the whole frame before it reads the rest.
   */
  get expectedLength(): number {
    return this.expected;
  }

  /** True while part of a frame is buffered or its header was read: a frame not yet returned has begun. */
  get midFrame(): boolean {
    return this.expected >= 0 || this.buffered > 0;
  }

  /** Feeds a chunk; returns the payloads of every frame it completed, in order. */
  push(chunk: Buffer): Buffer[] {
    this.append(chunk);
    const frames: Buffer[] = [];
    for (let f = this.next(); f !== undefined; f = this.next()) frames.push(f);
    return frames;
  }

  /**
   * Buffers a chunk without taking frames out of it, so that a reader can take them one at a time
   * (next) and leave the rest buffered while it cannot serve more.
   */
  append(chunk: Buffer): void {
    if (this.failed) throw new BlocksnapError('ProtocolError', 'the frame decoder already failed; the stream cannot be resynchronised');
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
  }

  /** The payload of the next complete frame, or undefined while none is complete. */
  next(): Buffer | undefined {
    if (this.failed) throw new BlocksnapError('ProtocolError', 'the frame decoder already failed; the stream cannot be resynchronised');
    if (this.expected < 0) {
      if (this.buffered < FRAME_HEADER_BYTES) return undefined;
      const length = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
      if (length > this.maxFrameBytes) {
        this.failed = true;
        this.chunks = [];
        this.buffered = 0;
        throw new BlocksnapError('FrameTooLarge', `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes} bytes`, {
          length,
          limit: this.maxFrameBytes,
        });
      }
      this.expected = length;
    }
    if (this.buffered < this.expected) return undefined;
    const payload = this.take(this.expected);
    this.expected = -1;
    return payload;
  }

  /** Removes n buffered bytes (n <= buffered), copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const used = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, used);
      filled += used;
      if (used === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(used);
    }
    this.buffered -= n;
    return out;
  }
}
