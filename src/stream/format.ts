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

export const STREAM_MAGIC = 'BSNAPSTR';
export const STREAM_VERSION = 1;
export const PREAMBLE_FIXED = 16;
export const HEADER_MAX = 1024 * 1024;
export const RECORD_BLOCK = 0x01;
export const RECORD_END = 0xff;

export interface StreamHeader {
  snapshot: {
    id: string; diskId: string; diskName: string; name: string; description: string; type: 'manual' | 'auto';
    parentId: string | null; createdAt: string; sizeBytes: number; blockSize: number; blockCount: number; logicalBytes: number;
  };
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

/** Reads a stream sequentially from a source (a file, a socket channel) through a buffer, hashing every byte read. */
export class StreamReader {
  private readonly hash: Hash = createHash('sha256');
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private received = 0;
  private eof = false;

  constructor(private readonly source: ByteSource, private readonly chunk = 8 * 1024 * 1024) {}

  get bytesRead(): number { return this.received - (this.buf.length - this.pos); }

  /** Exactly n bytes, hashed; StreamCorrupt on a truncated stream. */
  async read(n: number, hashIt = true): Promise<Buffer> {
    while (this.buf.length - this.pos < n && !this.eof) {
      const more = await this.source.read(Math.max(this.chunk, n - (this.buf.length - this.pos)));
      if (more.length === 0) this.eof = true;
      this.received += more.length;
      this.buf = Buffer.concat([this.buf.subarray(this.pos), more]);
      this.pos = 0;
    }
    if (this.buf.length - this.pos < n) throw corrupt(`is truncated after ${this.bytesRead + (this.buf.length - this.pos)} bytes`);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    if (hashIt) this.hash.update(out);
    return out;
  }

  async atEnd(): Promise<boolean> {
    if (this.buf.length - this.pos > 0) return false;
    if (this.eof) return true;
    const more = await this.source.read(1);
    this.received += more.length;
    this.buf = more;
    this.pos = 0;
    if (more.length === 0) this.eof = true;
    return more.length === 0;
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
    let h: StreamHeader;
    try {
      h = JSON.parse(json.toString('utf8')) as StreamHeader;
    } catch {
      throw corrupt('header is not valid JSON');
    }
    const s = h?.snapshot;
    if (!s || typeof s.id !== 'string' || !Number.isSafeInteger(s.sizeBytes) || !Number.isSafeInteger(s.blockSize) || s.blockSize <= 0
      || s.blockCount !== Math.ceil(s.sizeBytes / s.blockSize)) {
      throw corrupt('header has an invalid snapshot record');
    }
    return h;
  }

  async map(blockCount: number): Promise<Buffer> {
    const view = await this.read(blockCount * DIGEST_SIZE);
    const sum = await this.read(DIGEST_SIZE);
    if (!createHash('sha256').update(view).digest().equals(sum)) throw corrupt('block map fails its checksum');
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
