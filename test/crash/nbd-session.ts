/**
 * A pipelined NBD client (simple replies only) for the served-disk crash rounds: many requests in
 * flight at once, each answered by its own promise, so that a SIGKILL of the daemon lands while
 * writes are really on their way. Replies may come in any order; a request whose reply never
 * came rejects when the connection closes, and the test then counts its write as maybe-landed.
 */
import * as C from '../../src/nbd/constants';
import { RawClient } from '../nbd/fixtures/raw-client';

const SIMPLE_REPLY_MAGIC = 0x67446698;

interface Pending {
  /** Bytes of data that follow the reply header (a READ's length), 0 otherwise. */
  dataLength: number;
  resolve(r: { error: number; data: Buffer }): void;
  reject(e: Error): void;
}

export class NbdSession {
  private readonly pending = new Map<bigint, Pending>();
  private nextHandle = 1n;
  private closedWith: Error | null = null;

  private constructor(private readonly c: RawClient) {
    void this.readReplies();
  }

  /** Connects, negotiates `exportName` with NBD_OPT_GO and returns the export's size. */
  static async open(socketPath: string, exportName: string): Promise<{ session: NbdSession; size: number }> {
    const c = await RawClient.open(socketPath);
    try {
      await c.greet(C.NBD_FLAG_C_FIXED_NEWSTYLE | C.NBD_FLAG_C_NO_ZEROES);
      const replies = await c.go(exportName);
      const last = replies[replies.length - 1]!;
      if (last.type !== C.NBD_REP_ACK) throw new Error(`NBD_OPT_GO ${exportName} refused: reply type 0x${last.type.toString(16)}`);
      const info = replies.find((r) => r.type === C.NBD_REP_INFO && r.data.readUInt16BE(0) === C.NBD_INFO_EXPORT);
      if (!info) throw new Error('NBD_OPT_GO gave no NBD_INFO_EXPORT');
      return { session: new NbdSession(c), size: Number(info.data.readBigUInt64BE(2)) };
    } catch (e) {
      c.close();
      throw e;
    }
  }

  get closed(): boolean { return this.closedWith !== null; }

  write(offset: number, data: Buffer, fua: boolean): Promise<number> {
    return this.send(C.NBD_CMD_WRITE, offset, data.length, fua ? C.NBD_CMD_FLAG_FUA : 0, data).then((r) => r.error);
  }

  /**
   * A WRITE of `data` of which only the first `sent` bytes go out: the server waits for the rest,
   * so it cannot answer before the connection ends. Whatever is sent on this session after it is
   * taken for the rest of its payload.
   */
  writeCutShort(offset: number, data: Buffer, sent: number): Promise<number> {
    return this.send(C.NBD_CMD_WRITE, offset, data.length, 0, data.subarray(0, sent)).then((r) => r.error);
  }

  writeZeroes(offset: number, length: number, flags = 0): Promise<number> {
    return this.send(C.NBD_CMD_WRITE_ZEROES, offset, length, flags).then((r) => r.error);
  }

  trim(offset: number, length: number): Promise<number> {
    return this.send(C.NBD_CMD_TRIM, offset, length, 0).then((r) => r.error);
  }

  flush(): Promise<number> {
    return this.send(C.NBD_CMD_FLUSH, 0, 0, 0).then((r) => r.error);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const r = await this.send(C.NBD_CMD_READ, offset, length, 0);
    if (r.error !== 0) throw new Error(`NBD read of ${length} at ${offset} failed with error ${r.error}`);
    return r.data;
  }

  close(): void {
    this.c.close();
  }

  private send(type: number, offset: number, length: number, flags: number, payload?: Buffer): Promise<{ error: number; data: Buffer }> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const handle = this.nextHandle++;
    return new Promise((resolve, reject) => {
      this.pending.set(handle, { dataLength: type === C.NBD_CMD_READ ? length : 0, resolve, reject });
      this.c.request(type, offset, length, flags, handle, payload);
    });
  }

  private async readReplies(): Promise<void> {
    try {
      for (;;) {
        const h = await this.c.read(16, Infinity);
        if (h.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`not a simple reply: ${h.toString('hex')}`);
        const error = h.readUInt32BE(4);
        const handle = h.readBigUInt64BE(8);
        const p = this.pending.get(handle);
        if (!p) throw new Error(`a reply for handle ${handle}, which no request in flight has`);
        this.pending.delete(handle);
        const data = error === 0 && p.dataLength > 0 ? Buffer.from(await this.c.read(p.dataLength, Infinity)) : Buffer.alloc(0);
        p.resolve({ error, data });
      }
    } catch (e) {
      this.closedWith = e instanceof Error ? e : new Error(String(e));
      this.c.close();
      for (const p of this.pending.values()) p.reject(this.closedWith);
      this.pending.clear();
    }
  }
}
