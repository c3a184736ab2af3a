/**
 * The snapshot stream (frozen, version 1; docs/stream-format.md): one snapshot as a single byte
 * stream, full or incremental over a base, for moving snapshots between hosts without a bucket
 * (`snapshot export` → any transport → `snapshot import`). Little-endian throughout.
 *
 *   preamble  "BSNAPSTR" · u16 version · u16 flags (0) · u32 H · H bytes of header JSON ·
 *             32-byte SHA-256 of everything before it
 *   map       blockCount × 32 bytes (the snapshot's full view, ZERO as zeros) · SHA-256 of the map
 *   records   0x01 · 32-byte digest · u32 length · data        one per block the base lacks
 *             0xFF · u64 block records · u64 data bytes · SHA-256 of every byte before this hash
 *
 * Three checksums so that a damaged stream is refused as early as possible: the header before any
 * work, the map before any block is stored, each block by its own digest, and the whole stream
 * (truncation, reordering, a dropped record) before anything is committed.
 */
import { createHash, type Hash } from 'node:crypto';
import { BlocksnapError } from '../errors';
import { DIGEST_SIZE } from '../store/format';
import type { ByteSink, ByteSource } from './byte-io';
import { checkIncomingSnapshot, checkTimestamp, isIdOf, type IncomingSnapshot } from './snapshot-fields';

export const STREAM_MAGIC = 'BSNAPSTR';
export const STREAM_VERSION = 1;
export const PREAMBLE_FIXED = 16;
export const HEADER_MAX = 1024 * 1024;
export const RECORD_BLOCK = 0x01;
export const RECORD_END = 0xff;

export interface StreamHeader {
  snapshot: IncomingSnapshot;
  /** null for a full stream; else the snapshot the receiver must have, and the SHA-256 of its packed view. */
  base: { id: string; viewSha256: string } | null;
  exportedAt: string;
}

export function viewSha256(view: Buffer): string {
  return createHash('sha256').update(view).digest('hex');
}

/** Writes a stream sequentially to a sink (a file, a socket channel), hashing every byte for the trailer. */
export class StreamWriter {
  private readonly hash: Hash = createHash('sha256');
  private offset = 0;
  blocks = 0;
  dataBytes = 0;

  constructor(private readonly sink: ByteSink) {}

  get bytes(): number { return this.offset; }

  private async write(...parts: Buffer[]): Promise<void> {
    for (const p of parts) this.hash.update(p);
    await this.sink.write(parts);
    this.offset += parts.reduce((a, p) => a + p.length, 0);
  }

  async preamble(header: StreamHeader): Promise<void> {
    const json = Buffer.from(JSON.stringify(header));
    const fixed = Buffer.alloc(PREAMBLE_FIXED);
    fixed.write(STREAM_MAGIC, 0, 'latin1');
    fixed.writeUInt16LE(STREAM_VERSION, 8);
    fixed.writeUInt16LE(0, 10);
    fixed.writeUInt32LE(json.length, 12);
    const sum = createHash('sha256').update(fixed).update(json).digest();
    await this.write(fixed, json, sum);
  }

  async map(view: Buffer): Promise<void> {
    await this.write(view, createHash('sha256').update(view).digest());
  }

  async block(digest: Buffer, data: Buffer): Promise<void> {
    const head = Buffer.alloc(1 + DIGEST_SIZE + 4);
    head.writeUInt8(RECORD_BLOCK, 0);
    digest.copy(head, 1);
    head.writeUInt32LE(data.length, 1 + DIGEST_SIZE);
    await this.write(head, data);
    this.blocks++;
    this.dataBytes += data.length;
  }

  async end(): Promise<void> {
    const rec = Buffer.alloc(17);
    rec.writeUInt8(RECORD_END, 0);
    rec.writeBigUInt64LE(BigInt(this.blocks), 1);
    rec.writeBigUInt64LE(BigInt(this.dataBytes), 9);
    this.hash.update(rec);
    const sum = this.hash.digest();
    await this.sink.write([rec, sum]);
    this.offset += rec.length + sum.length;
  }
}

const corrupt = (why: string): BlocksnapError => new BlocksnapError('StreamCorrupt', `the stream ${why}`);
const badField = (field: string, why: string): BlocksnapError => corrupt(`header field ${field} ${why}`);

/**
 * Checks every field of a parsed header (snapshot-fields.ts): the header is sealed by a checksum
 * anyone can compute, so its content is as untrusted as the rest of the stream. The block count is
 * bounded before the map is read, so a header cannot make the reader allocate more than a map the
 * daemon could hold.
 */
export function checkHeader(v: unknown): StreamHeader {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw corrupt('header is not a JSON object');
  const h = v as Record<string, unknown>;
  checkIncomingSnapshot(h.snapshot, badField);
  const b = h.base as Record<string, unknown> | null;
  if (b !== null) {
    if (typeof b !== 'object' || Array.isArray(b)) throw badField('base', 'is neither null nor an object');
    if (!isIdOf('s', b.id)) throw badField('base.id', 'is not a snapshot id');
    if (typeof b.viewSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(b.viewSha256)) throw badField('base.viewSha256', 'is not a hex SHA-256');
  }
  checkTimestamp(h.exportedAt, 'exportedAt', badField);
  return h as unknown as StreamHeader;
}

/**
 * Reads a stream sequentially from a source (a file, a socket channel), hashing every byte read.
 * Bytes received are kept as the list of chunks the source gave; a read of n bytes joins chunks
 * only once n bytes are there, so a large map arriving in small chunks is copied once, not once
 * per chunk, and a block lying inside one chunk is returned without a copy.
 */
export class StreamReader {
  private readonly hash: Hash = createHash('sha256');
  /** Unconsumed chunks; the first starts `pos` bytes in. */
  private chunks: Buffer[] = [];
  private pos = 0;
  private buffered = 0;
  private received = 0;
  private eof = false;

  constructor(private readonly source: ByteSource, private readonly chunk = 8 * 1024 * 1024) {}

  get bytesRead(): number { return this.received - this.buffered; }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.eof) {
      const more = await this.source.read(Math.max(this.chunk, n - this.buffered));
      if (more.length === 0) { this.eof = true; break; }
      this.received += more.length;
      this.buffered += more.length;
      this.chunks.push(more);
    }
  }

  /** Exactly n bytes, hashed; StreamCorrupt on a truncated stream. The buffer may share memory with the source's. */
  async read(n: number, hashIt = true): Promise<Buffer> {
    await this.fill(n);
    if (this.buffered < n) throw corrupt(`is truncated after ${this.received} bytes`);
    let out: Buffer;
    const first = this.chunks[0];
    if (n === 0) out = Buffer.alloc(0);
    else if (first.length - this.pos >= n) {
      out = first.subarray(this.pos, this.pos + n);
      this.pos += n;
      if (this.pos === first.length) { this.chunks.shift(); this.pos = 0; }
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0];
        const take = Math.min(n - filled, c.length - this.pos);
        c.copy(out, filled, this.pos, this.pos + take);
        filled += take;
        this.pos += take;
        if (this.pos === c.length) { this.chunks.shift(); this.pos = 0; }
      }
    }
    this.buffered -= n;
    if (hashIt) this.hash.update(out);
    return out;
  }

  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    await this.fill(1);
    return this.buffered === 0;
  }

  digestSoFar(): Buffer {
    return this.hash.copy().digest();
  }

  async preamble(): Promise<StreamHeader> {
    const fixed = await this.read(PREAMBLE_FIXED);
    if (fixed.toString('latin1', 0, 8) !== STREAM_MAGIC) throw corrupt('does not start with the blocksnap stream magic');
    const version = fixed.readUInt16LE(8);
    if (version !== STREAM_VERSION) throw corrupt(`has version ${version}; this blocksnap reads version ${STREAM_VERSION}`);
    if (fixed.readUInt16LE(10) !== 0) throw corrupt('has unknown flags');
    const len = fixed.readUInt32LE(12);
    if (len === 0 || len > HEADER_MAX) throw corrupt(`has a header of ${len} bytes`);
    const json = await this.read(len);
    const sum = await this.read(DIGEST_SIZE);
    if (!createHash('sha256').update(fixed).update(json).digest().equals(sum)) throw corrupt('header fails its checksum');
    let h: unknown;
    try {
      h = JSON.parse(json.toString('utf8'));
    } catch {
      throw corrupt('header is not valid JSON');
    }
    return checkHeader(h);
  }

  /**
   * The map of `blockCount` blocks, checksum verified. Copied into one buffer and hashed piece by
   * piece as it arrives: a large map is never held twice (its chunks, then their join), and the
   * buffer's pages are touched, so held, only as bytes arrive, not when a header claims them.
   */
  async map(blockCount: number): Promise<Buffer> {
    const n = blockCount * DIGEST_SIZE;
    const view = Buffer.allocUnsafe(n);
    const hash = createHash('sha256');
    for (let at = 0; at < n;) {
      const piece = await this.read(Math.min(this.chunk, n - at));
      piece.copy(view, at);
      hash.update(piece);
      at += piece.length;
    }
    const sum = await this.read(DIGEST_SIZE);
    if (!hash.digest().equals(sum)) throw corrupt('block map fails its checksum');
    return view;
  }

  /** The next block record, or null at the end record (whose counts and checksum are verified). */
  async next(maxLength: number, counts: { blocks: number; bytes: number }): Promise<{ digest: Buffer; data: Buffer } | null> {
    const type = (await this.read(1))[0];
    if (type === RECORD_BLOCK) {
      const head = await this.read(DIGEST_SIZE + 4);
      const len = head.readUInt32LE(DIGEST_SIZE);
      if (len === 0 || len > maxLength) throw corrupt(`has a block record of ${len} bytes`);
      const data = await this.read(len);
      return { digest: head.subarray(0, DIGEST_SIZE), data };
    }
    if (type !== RECORD_END) throw corrupt(`has an unknown record type 0x${(type ?? 0).toString(16)}`);
    const rec = await this.read(16);
    const expected = this.digestSoFar();
    const sum = await this.read(DIGEST_SIZE, false);
    if (Number(rec.readBigUInt64LE(0)) !== counts.blocks || Number(rec.readBigUInt64LE(8)) !== counts.bytes) throw corrupt('end record disagrees with the records read');
    if (!expected.equals(sum)) throw corrupt('fails its final checksum');
    if (!(await this.atEnd())) throw corrupt('has bytes after its end record');
    return null;
  }
}
