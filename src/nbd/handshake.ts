/**
 * The fixed newstyle handshake, server side: greeting, client flags, then option haggling until
 * the client picks an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or leaves. Option errors are
 * answered with the spec's error replies and haggling goes on; only a breach of a MUST (bad
 * magic, unknown client flags, an option longer than we accept) closes the connection, by
 * throwing ProtocolViolation. TLS is not offered (NOTLS mode): the socket is a local Unix socket
 * guarded by its file mode.
 */
import type { Socket } from 'node:net';
import type { ByteReader } from './byte-reader';
import type { ExportTable, NbdExport } from './backend';
import * as C from './constants';
import { drained } from './drained';
import { quoteName, wireString } from './strings';

/** The peer broke a MUST of the protocol: the connection is closed, nothing else is affected. */
export class ProtocolViolation extends Error {}

/** Largest option payload accepted (names and queries are at most 4 KiB strings each). */
export const MAX_OPTION_LENGTH = 64 * 1024;
/**
 * The maximum block size advertised, so clients that honour it split larger requests; also the
 * piece larger READs and WRITEs are served in. One store block: bigger payloads bought no
 * throughput and, held as whole buffers, kept the daemon's RSS well above its 256 MiB target (a
 * 64 MiB guest write: 331 MiB vs 174 MiB).
 */
export const MAX_REQUEST_LENGTH = 4 * 1024 * 1024;
/**
 * Largest READ/WRITE payload served at all (2^25). A client that did not negotiate block sizes
 * (the Linux kernel's sends NBD_OPT_GO with no information requests) may send up to this much,
 * and the protocol says such a payload SHOULD NOT be taken for a denial of service.
 */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
export const PREFERRED_BLOCK_SIZE = 4096;
/** The id of base:allocation in this server's replies (any non-zero id would do). */
export const BASE_ALLOCATION_ID = 1;

export interface Negotiated {
  export: NbdExport;
  structured: boolean;
  /** base:allocation was selected for this export. */
  blockStatus: boolean;
  transmissionFlags: number;
}

/** Transmission flags of an export for a client that did (not) negotiate structured replies. */
export function transmissionFlags(exp: NbdExport, structured: boolean): number {
  const b = exp.backend;
  let f = C.NBD_FLAG_HAS_FLAGS | C.NBD_FLAG_SEND_FLUSH | C.NBD_FLAG_CAN_MULTI_CONN;
  if (structured) f |= C.NBD_FLAG_SEND_DF;
  if (!b.writable) return f | C.NBD_FLAG_READ_ONLY;
  f |= C.NBD_FLAG_SEND_FUA;
  if (b.trim) f |= C.NBD_FLAG_SEND_TRIM;
  if (b.zero) f |= C.NBD_FLAG_SEND_WRITE_ZEROES;
  return f;
}

/** Reads a length-prefixed (32-bit) string out of option data; null when it overruns. */
class OptionData {
  private at = 0;
  constructor(readonly buf: Buffer) {}
  get remaining(): number { return this.buf.length - this.at; }
  u16(): number | null {
    if (this.remaining < 2) return null;
    const v = this.buf.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number | null {
    if (this.remaining < 4) return null;
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  string(len: number): string | null {
    if (len > this.remaining || len > C.NBD_MAX_STRING) return null;
    const s = this.buf.toString('utf8', this.at, this.at + len);
    this.at += len;
    return s;
  }
}

export class Handshake {
  private structured = false;
  private noZeroes = false;
  /** Export name the last NBD_OPT_SET_META_CONTEXT referred to, if it selected base:allocation. */
  private metaExport: string | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    private readonly exports: ExportTable,
    private readonly shuttingDown: () => boolean,
  ) {}

  /** Resolves with the negotiated export, or null when the client aborted. */
  async run(): Promise<Negotiated | null> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(C.NBDMAGIC, 0);
    hello.writeBigUInt64BE(C.IHAVEOPT, 8);
    hello.writeUInt16BE(C.NBD_FLAG_FIXED_NEWSTYLE | C.NBD_FLAG_NO_ZEROES, 16);
    this.socket.write(hello);
    const clientFlags = (await this.reader.take(4)).readUInt32BE(0);
    if ((clientFlags & ~(C.NBD_FLAG_C_FIXED_NEWSTYLE | C.NBD_FLAG_C_NO_ZEROES)) !== 0) {
      throw new ProtocolViolation(`unknown client flags 0x${clientFlags.toString(16)}`);
    }
    this.noZeroes = (clientFlags & C.NBD_FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      // A client that sends options without reading the replies would otherwise grow them here.
      if (this.socket.writableNeedDrain) await drained(this.socket);
      const head = await this.reader.take(16);
      if (head.readBigUInt64BE(0) !== C.IHAVEOPT) throw new ProtocolViolation('an option does not start with IHAVEOPT');
      const option = head.readUInt32BE(8);
      const length = head.readUInt32BE(12);
      if (length > MAX_OPTION_LENGTH) throw new ProtocolViolation(`option ${option} carries ${length} bytes, more than ${MAX_OPTION_LENGTH}`);
      const data = await this.reader.take(length);
      const done = this.option(option, data);
      if (done !== undefined) return done;
    }
  }

  /** Answers one option; returns the negotiated export (or null) when haggling ends. */
  private option(option: number, data: Buffer): Negotiated | null | undefined {
    if (option === C.NBD_OPT_EXPORT_NAME) return this.exportName(data);
    if (option === C.NBD_OPT_ABORT) {
      this.reply(option, C.NBD_REP_ACK);
      return null;
    }
    if (this.shuttingDown()) {
      this.error(option, C.NBD_REP_ERR_SHUTDOWN, 'the server is shutting down');
      return undefined;
    }
    switch (option) {
      case C.NBD_OPT_LIST:
        if (data.length !== 0) return this.error(option, C.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        for (const name of this.exports.names()) {
          const n = Buffer.from(name, 'utf8');
          const p = Buffer.alloc(4 + n.length);
          p.writeUInt32BE(n.length, 0);
          n.copy(p, 4);
          this.reply(option, C.NBD_REP_SERVER, p);
        }
        this.reply(option, C.NBD_REP_ACK);
        return undefined;
      case C.NBD_OPT_STARTTLS:
        return this.error(option, C.NBD_REP_ERR_POLICY, 'TLS is not offered on this local socket');
      case C.NBD_OPT_INFO:
      case C.NBD_OPT_GO:
        return this.infoOrGo(option, data);
      case C.NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.error(option, C.NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        this.reply(option, C.NBD_REP_ACK);
        return undefined;
      case C.NBD_OPT_LIST_META_CONTEXT:
      case C.NBD_OPT_SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        return this.error(option, C.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private exportName(data: Buffer): Negotiated {
    const name = data.toString('utf8');
    const exp = this.exports.lookup(name);
    // This option cannot be answered with an error: the spec says to end the session.
    if (!exp) throw new ProtocolViolation(`NBD_OPT_EXPORT_NAME asked for the unknown export ${quoteName(name)}`);
    const flags = transmissionFlags(exp, this.structured);
    const out = Buffer.alloc(this.noZeroes ? 10 : 134);
    out.writeBigUInt64BE(BigInt(exp.backend.size), 0);
    out.writeUInt16BE(flags, 8);
    this.socket.write(out);
    return { export: exp, structured: this.structured, blockStatus: this.metaExport === name, transmissionFlags: flags };
  }

  private infoOrGo(option: number, data: Buffer): Negotiated | undefined {
    const d = new OptionData(data);
    const nameLength = d.u32();
    const name = nameLength === null ? null : d.string(nameLength);
    const count = d.u16();
    if (name === null || count === null || d.remaining !== count * 2) {
      return this.error(option, C.NBD_REP_ERR_INVALID, 'malformed NBD_OPT_INFO/NBD_OPT_GO data');
    }
    const wanted = new Set<number>();
    for (let i = 0; i < count; i++) wanted.add(d.u16()!);
    const exp = this.exports.lookup(name);
    if (!exp) return this.error(option, C.NBD_REP_ERR_UNKNOWN, `no export named ${quoteName(name)}`);
    const flags = transmissionFlags(exp, this.structured);
    const info = Buffer.alloc(12);
    info.writeUInt16BE(C.NBD_INFO_EXPORT, 0);
    info.writeBigUInt64BE(BigInt(exp.backend.size), 2);
    info.writeUInt16BE(flags, 10);
    this.reply(option, C.NBD_REP_INFO, info);
    if (wanted.has(C.NBD_INFO_NAME)) this.reply(option, C.NBD_REP_INFO, infoString(C.NBD_INFO_NAME, exp.name));
    if (wanted.has(C.NBD_INFO_DESCRIPTION) && exp.description) this.reply(option, C.NBD_REP_INFO, infoString(C.NBD_INFO_DESCRIPTION, exp.description));
    // Sent unasked too: clients that honour it split requests at 4 MiB; larger ones up to
    // MAX_PAYLOAD are still served, for clients that go by the protocol's default (2^25).
    const bs = Buffer.alloc(14);
    bs.writeUInt16BE(C.NBD_INFO_BLOCK_SIZE, 0);
    bs.writeUInt32BE(1, 2);
    bs.writeUInt32BE(PREFERRED_BLOCK_SIZE, 6);
    bs.writeUInt32BE(Math.min(MAX_REQUEST_LENGTH, Math.max(exp.backend.size, PREFERRED_BLOCK_SIZE)), 10);
    this.reply(option, C.NBD_REP_INFO, bs);
    this.reply(option, C.NBD_REP_ACK);
    if (option === C.NBD_OPT_INFO) return undefined;
    return { export: exp, structured: this.structured, blockStatus: this.metaExport === name, transmissionFlags: flags };
  }

  private metaContext(option: number, data: Buffer): undefined {
    const set = option === C.NBD_OPT_SET_META_CONTEXT;
    // Replaced even when the request fails, as the spec says.
    if (set) this.metaExport = null;
    if (!this.structured) return this.error(option, C.NBD_REP_ERR_INVALID, 'negotiate structured replies first');
    const d = new OptionData(data);
    const nameLength = d.u32();
    const name = nameLength === null ? null : d.string(nameLength);
    const count = d.u32();
    if (name === null || count === null) return this.error(option, C.NBD_REP_ERR_INVALID, 'malformed metadata context request');
    const queries: string[] = [];
    for (let i = 0; i < count; i++) {
      const len = d.u32();
      const q = len === null ? null : d.string(len);
      if (q === null) return this.error(option, C.NBD_REP_ERR_INVALID, 'a metadata context query overruns the option');
      queries.push(q);
    }
    if (d.remaining !== 0) return this.error(option, C.NBD_REP_ERR_INVALID, 'trailing bytes after the metadata context queries');
    if (!this.exports.lookup(name)) return this.error(option, C.NBD_REP_ERR_UNKNOWN, `no export named ${quoteName(name)}`);
    // base:allocation is the only context; "base:" is a wildcard when listing, ignored when setting.
    const selected = set
      ? queries.includes(C.BASE_ALLOCATION)
      : queries.length === 0 || queries.some((q) => q === C.BASE_ALLOCATION || q === 'base:');
    if (selected) {
      const n = Buffer.from(C.BASE_ALLOCATION, 'utf8');
      const p = Buffer.alloc(4 + n.length);
      p.writeUInt32BE(set ? BASE_ALLOCATION_ID : 0, 0);
      n.copy(p, 4);
      this.reply(option, C.NBD_REP_META_CONTEXT, p);
      if (set) this.metaExport = name;
    }
    this.reply(option, C.NBD_REP_ACK);
    return undefined;
  }

  private reply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(C.OPTION_REPLY_MAGIC, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data.length, 16);
    this.socket.write(data.length > 0 ? Buffer.concat([h, data]) : h);
  }

  private error(option: number, type: number, message: string): undefined {
    this.reply(option, type, wireString(message));
    return undefined;
  }
}

function infoString(type: number, s: string): Buffer {
  const v = wireString(s);
  const b = Buffer.alloc(2 + v.length);
  b.writeUInt16BE(type, 0);
  v.copy(b, 2);
  return b;
}
