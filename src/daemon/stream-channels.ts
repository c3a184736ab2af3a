/**
 * Snapshot streams through the control socket (`snapshot export -o -`, `snapshot import -i -`):
 * the daemon may run as another user, in another mount namespace, so the client's stdin and
 * stdout cannot be opened by path; the bytes travel in frames on the client's own connection
 * (docs/protocol.md, *Streams*). One registry per connection, holding its open channels by the
 * stream id the client chose.
 *
 * Flow control is credit based, so memory stays bounded on both sides whatever either side's speed:
 *  - out (export): the daemon sends `data` events of at most STREAM_CHUNK_BYTES and never has more
 *    than STREAM_WINDOW_BYTES unacknowledged; the client acknowledges bytes (`stream.ack`) once it
 *    has written them on, and the export job waits for credit.
 *  - in (import): each `stream.data` request carries one chunk and is answered once the import job
 *    has taken it; the client keeps at most STREAM_WINDOW_BYTES unanswered, and a chunk beyond
 *    that fails the channel (a client that ignores the window cannot make the daemon buffer).
 *
 * States of a channel: open → ended (import: the client sent `end`) → closed. Closed is final: by
 * the job ending (the registry forgets the channel), by the connection closing (except an import
 * that has ended: all it needs has arrived, so its job reads on and commits), or by a cancel;
 * a closed channel fails the pending read or write with its error, so the job never waits forever
 * for a client that is gone. A client that shuts down its sending side can neither feed an import
 * nor acknowledge an export any more: an import it has not ended fails then, an export once it
 * runs out of credit. A client that stays connected but sends nothing while an import waits for its
 * bytes (a stalled ssh upstream of `snapshot import -i -`) fails the import after the stall limit
 * (StreamStalled): from its first block to its commit an import holds the shared store lock, which
 * a queued gc, and every snapshot behind that gc, waits for.
 */
import { BlocksnapError } from '../errors';
import type { InChannel, OutChannel } from '../engine/streams';
import type { DataEvent } from './protocol/messages';

/** Largest data chunk in either direction (well under the default 1 MiB request frame). */
export const STREAM_CHUNK_BYTES = 256 * 1024;
/** Bytes the sender may have in flight, unacknowledged. */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
/** An import waiting this long for a client that sends nothing fails (as long as the NBD server waits for a payload). */
export const STREAM_STALL_MS = 30_000;

const closedError = (why: string): BlocksnapError => new BlocksnapError('StreamClosed', why);

interface Waiter { resolve(): void; reject(err: Error): void }

/** Export side: bytes from the job to the client, within the client's credit. */
class OutgoingChannel implements OutChannel {
  private credit = STREAM_WINDOW_BYTES;
  private seq = 0;
  private closed: Error | null = null;
  /** Set once the client can send nothing more (it shut down its side of the connection). */
  private noMoreCredit: Error | null = null;
  private waiter: Waiter | null = null;

  constructor(private readonly id: string, private readonly send: (e: DataEvent) => void) {}

  async write(parts: Buffer[]): Promise<void> {
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    for (let off = 0; off < bytes.length; off += STREAM_CHUNK_BYTES) {
      const chunk = bytes.subarray(off, Math.min(bytes.length, off + STREAM_CHUNK_BYTES));
      while (this.credit < chunk.length && this.closed === null) {
        // No acknowledgement can come any more: waiting for credit would wait for ever.
        if (this.noMoreCredit) throw this.noMoreCredit;
        await new Promise<void>((resolve, reject) => { this.waiter = { resolve, reject }; });
      }
      if (this.closed) throw this.closed;
      this.credit -= chunk.length;
      this.send({ event: 'data', stream: this.id, seq: this.seq++, data: chunk });
    }
  }

  ack(bytes: number): void {
    if (this.closed) throw this.closed;
    if (this.credit + bytes > STREAM_WINDOW_BYTES) {
      throw new BlocksnapError('InvalidArgument', `stream ${this.id}: ${bytes} bytes acknowledged, but only ${STREAM_WINDOW_BYTES - this.credit} are unacknowledged`);
    }
    this.credit += bytes;
    this.wake();
  }

  close(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    this.wake();
  }

  /** The client sends nothing more: the stream goes on while its credit lasts, then fails. */
  inputEnded(err: Error): void {
    if (this.closed || this.noMoreCredit) return;
    this.noMoreCredit = err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    if (!w) return;
    if (this.closed) w.reject(this.closed); else w.resolve();
  }
}

/** Import side: chunks from the client, queued until the job reads them. */
class IncomingChannel implements InChannel {
  private readonly queue: Array<{ data: Buffer; taken: Waiter }> = [];
  private queued = 0;
  private ended = false;
  private closed: Error | null = null;
  private reader: { resolve(b: Buffer): void; reject(err: Error): void } | null = null;
  /** Runs while the job waits for bytes the client has not sent: only the client can be slow then. */
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(private readonly id: string, private readonly stallMs: number) {}

  /** Queues one chunk (or the end); resolves once the job has taken it. */
  push(data: Buffer | undefined, end: boolean): Promise<void> {
    if (this.closed) return Promise.reject(this.closed);
    if (this.ended) return Promise.reject(new BlocksnapError('InvalidArgument', `stream ${this.id} has ended; no data may follow`));
    const len = data?.length ?? 0;
    if (len > STREAM_CHUNK_BYTES) return Promise.reject(new BlocksnapError('InvalidArgument', `stream ${this.id}: a chunk holds at most ${STREAM_CHUNK_BYTES} bytes, got ${len}`));
    if (this.queued + len > STREAM_WINDOW_BYTES) {
      const err = new BlocksnapError('InvalidArgument', `stream ${this.id}: the client sent more than ${STREAM_WINDOW_BYTES} unanswered bytes`);
      this.close(err);
      return Promise.reject(err);
    }
    const pending: Array<Promise<void>> = [];
    if (len > 0) {
      pending.push(new Promise<void>((resolve, reject) => {
        this.queue.push({ data: data!, taken: { resolve, reject } });
        this.queued += len;
      }));
    }
    if (end) this.ended = true;
    this.feed();
    return Promise.all(pending).then(() => undefined);
  }

  /** The client sends nothing more: a stream it has not ended can never end. */
  inputEnded(err: Error): void {
    if (!this.ended) this.close(err);
  }

  /** Everything the client will send has arrived; the job may not have read it all yet. */
  get complete(): boolean {
    return this.ended && this.closed === null;
  }

  read(_max: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise<Buffer>((resolve, reject) => {
      this.reader = { resolve, reject };
      this.feed();
      if (this.reader !== null) this.watchForStall();
    });
  }

  close(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    this.stopWatching();
    for (const q of this.queue.splice(0)) q.taken.reject(err);
    this.queued = 0;
    const r = this.reader;
    this.reader = null;
    r?.reject(err);
  }

  private watchForStall(): void {
    this.stallTimer = setTimeout(() => {
      this.close(new BlocksnapError('StreamStalled',
        `stream ${this.id}: the client sent nothing for ${this.stallMs / 1000} s while the import waited for its bytes`, { stallMs: this.stallMs }));
    }, this.stallMs);
  }

  private stopWatching(): void {
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  private feed(): void {
    const r = this.reader;
    if (!r) return;
    const next = this.queue.shift();
    if (next) {
      this.stopWatching();
      this.reader = null;
      this.queued -= next.data.length;
      next.taken.resolve();
      r.resolve(next.data);
    } else if (this.ended) {
      this.stopWatching();
      this.reader = null;
      r.resolve(Buffer.alloc(0));
    }
  }
}

export class StreamChannels {
  private readonly channels = new Map<string, OutgoingChannel | IncomingChannel>();
  private closedWith: Error | null = null;

  /**
   * `dropped` is told when a channel goes: the connection may have become idle. `stallMs`: how
   * long an import waits for a client that sends nothing (STREAM_STALL_MS).
   */
  constructor(
    private readonly send: (e: DataEvent) => void,
    private readonly dropped: () => void = () => undefined,
    private readonly stallMs: number = STREAM_STALL_MS,
  ) {}

  /** Channels open: each one's job still needs this connection. */
  get size(): number {
    return this.channels.size;
  }

  openOut(id: string): OutChannel {
    return this.add(id, new OutgoingChannel(id, this.send));
  }

  openIn(id: string): InChannel {
    return this.add(id, new IncomingChannel(id, this.stallMs));
  }

  /** Forgets the channel once `done` settles (its job ended): late data and acks then fail. */
  bind(id: string, done: Promise<unknown>): void {
    const forget = (): void => this.drop(id, closedError(`stream ${id} is closed: its job has ended`));
    done.then(forget, forget);
  }

  /** Drops a channel whose job never started. */
  drop(id: string, err: Error): void {
    const ch = this.channels.get(id);
    if (!ch) return;
    this.channels.delete(id);
    ch.close(err);
    this.dropped();
  }

  ack(id: string, bytes: number): void {
    const ch = this.channels.get(id);
    if (!(ch instanceof OutgoingChannel)) throw closedError(`no export stream ${JSON.stringify(id)} is open on this connection`);
    ch.ack(bytes);
  }

  data(id: string, data: Buffer | undefined, end: boolean): Promise<void> {
    const ch = this.channels.get(id);
    if (!(ch instanceof IncomingChannel)) return Promise.reject(closedError(`no import stream ${JSON.stringify(id)} is open on this connection`));
    return ch.push(data, end);
  }

  /** The client shut down its sending side: channels that still need its input fail. */
  inputEnded(err: Error): void {
    for (const ch of this.channels.values()) ch.inputEnded(err);
  }

  /**
   * The connection is gone: every channel that still needs the client fails, so its job ends
   * instead of waiting. A whole import does not need it: whether the client stayed to hear the
   * answer or not, the same bytes arrived, and they are committed the same way.
   */
  closeAll(err: Error): void {
    this.closedWith = err;
    for (const [id, ch] of [...this.channels]) {
      if (ch instanceof IncomingChannel && ch.complete) continue;
      this.drop(id, err);
    }
  }

  private add<T extends OutgoingChannel | IncomingChannel>(id: string, ch: T): T {
    if (this.closedWith) throw this.closedWith;
    if (this.channels.has(id)) throw new BlocksnapError('InvalidArgument', `stream ${JSON.stringify(id)} is already open on this connection`);
    this.channels.set(id, ch);
    return ch;
  }
}
