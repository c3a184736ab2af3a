/**
 * One client connection. State: waiting for hello → ready → closing. Holds the frame decoder, the
 * count of requests in flight, and the jobs whose progress the client subscribed to.
 *
 * A connection must never be able to hurt the daemon or other clients:
 *  - every request runs in its own promise whose failure becomes an error response;
 *  - a stream that cannot be trusted any more (bad length prefix, undecodable frame) gets one
 *    error and is closed, because there is no way to find the next frame boundary;
 *  - requests are plain msgpack, checked before msgpackr decodes them (messages.ts), so no frame can
 *    make the daemon build msgpackr's extension objects or recurse without bound;
 *  - requests are taken from the decoder one at a time, and only while fewer than maxInFlight are
 *    running and the client has read its answers down to the high-water mark: a client that floods
 *    or stops reading is pushed back through the socket instead of being queued for in memory;
 *  - a frame must arrive whole within frameTimeoutMs of its first byte, so a client cannot pin a
 *    part of a frame (up to maxFrameBytes) in the daemon's memory for ever;
 *  - a frame longer than one socket read (UNBUDGETED_FRAME_BYTES) is read only once its length is
 *    granted by the daemon-wide frameBudget: many clients each sending part of a large frame
 *    cannot add up to clients × maxFrameBytes. A client waits for the budget with its socket
 *    paused; holders are being read under the frame deadline, so the wait is bounded;
 *  - outgoing data is bounded: progress events are dropped for a client whose socket buffer is
 *    above a high-water mark (a job's last event and the final response still carry the end
 *    state), and a client that leaves more than that of what cannot be dropped (answers, stream
 *    data) unread is disconnected rather than buffered for without limit. Progress alone never
 *    gets a client disconnected: one stopped for a while (a CLI suspended with Ctrl-Z, a frozen
 *    terminal) has missed only progress, and still gets its job's end when it reads again;
 *  - while the daemon does not read a client (pushing back), it still looks at the socket every
 *    pausedProbeMs: a socket nobody reads never reports its peer's hang-up, and the requests in
 *    flight of a client that is gone may wait for that very client (its stream's job) for ever.
 *    What arrives meanwhile is queued up to maxQueuedBytes beyond one frame, then the client is
 *    disconnected;
 *  - a client that shuts down its sending side (half-close) still gets the answer to every
 *    request it sent; the connection closes once they are answered. A client that closed its
 *    socket for good looks the same to a reader, so after an end of stream the socket's state is
 *    looked at every pausedProbeMs: one that is gone is dropped at once, rather than when an
 *    answer or a progress event (which a quiet job.wait may not send for hours) fails to reach it;
 *  - a client with nothing running, nothing watched and no stream open for idleTimeoutMs is
 *    disconnected, so clients that leak connections give their slots back.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ByteBudget } from '../byte-budget';
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { Job } from '../engine/types';
import { isFinished, type DaemonEngine } from './engine-port';
import { lookupMethod, type CallContext, type DaemonInfo } from './methods';
import { peerOf } from './socket-peer';
import type { UserCredentials } from '../engine/user-access';
import { FRAME_HEADER_BYTES, FrameDecoder, frame } from './protocol/frame';
import { STREAM_STALL_MS, StreamChannels } from './stream-channels';
import { decodeRequestPayload, encodeMessage, parseRequest, type ErrorBody, type RequestId, type ServerMessage } from './protocol/messages';

export interface ConnectionLimits {
  /** Largest request frame accepted. */
  maxFrameBytes: number;
  /**
   * Above this many unsent bytes, progress events for the client are dropped and no further
   * request of it is taken until it has read its answers.
   */
  eventHighWaterBytes: number;
  /** Above this many unsent bytes, the client is disconnected: it is not reading. */
  maxBufferedBytes: number;
  /**
   * A client that leaves more than eventHighWaterBytes of answers and stream data (progress events
   * do not count) unread, and reads none of it for this long, is disconnected.
   */
  stallTimeoutMs: number;
  /** An import stream whose client sends nothing this long while the job waits for it fails (StreamStalled). */
  streamStallMs: number;
  /** A client that sends no successful hello within this time is disconnected. */
  helloTimeoutMs: number;
  /** A frame must arrive whole within this time of its first byte (while the daemon reads the client). */
  frameTimeoutMs: number;
  /** Reading from the client pauses while this many of its requests are running. */
  maxInFlight: number;
  /** While reading is paused, the socket is looked at this often (to notice a client that hung up). */
  pausedProbeMs: number;
  /** Bytes a paused client may queue beyond one frame of maxFrameBytes before it is disconnected. */
  maxQueuedBytes: number;
  /** Time allowed to flush the last bytes when closing before the socket is destroyed. */
  closeGraceMs: number;
  /** A client with no request running, no job watched and no stream open this long is disconnected; 0: never. */
  idleTimeoutMs: number;
  /** Bytes of frames longer than UNBUDGETED_FRAME_BYTES that all clients together may be sending at once. */
  frameBudgetBytes: number;
}

/**
 * Frames up to this length arrive in one socket read (Node reads 64 KiB at a time): what waiting
 * for budget could save is already in memory, so they are read without it.
 */
export const UNBUDGETED_FRAME_BYTES = 64 * 1024;

export const DEFAULT_LIMITS: Omit<ConnectionLimits, 'maxFrameBytes'> = {
  eventHighWaterBytes: 256 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
  stallTimeoutMs: 30_000,
  streamStallMs: STREAM_STALL_MS,
  helloTimeoutMs: 10_000,
  frameTimeoutMs: 30_000,
  maxInFlight: 64,
  pausedProbeMs: 1_000,
  maxQueuedBytes: 64 * 1024,
  closeGraceMs: 2_000,
  idleTimeoutMs: 900_000,
  frameBudgetBytes: 64 * 1024 * 1024,
};

export interface ConnectionHost {
  readonly engine: DaemonEngine;
  readonly info: DaemonInfo;
  readonly limits: ConnectionLimits;
  /** Shared by every connection of the daemon; frameBudgetBytes large. */
  readonly frameBudget: ByteBudget;
  /** True once the daemon stopped accepting work. */
  isShuttingDown(): boolean;
}

type ConnState = 'hello' | 'ready' | 'closing';

export class Connection {
  readonly id: number;
  private readonly socket: Socket;
  private readonly host: ConnectionHost;
  private readonly log: Logger;
  private readonly decoder: FrameDecoder;
  private readonly ctx: CallContext;
  private readonly channels: StreamChannels;
  private state: ConnState = 'hello';
  /** Hello requests not yet answered: a request behind one is early, not missing its hello. */
  private helloInFlight = 0;
  private inFlight = 0;
  /** False while the socket is paused: the client is pushed back. */
  private reading = true;
  /** The client shut down its sending side: no more bytes will come. */
  private peerEnded = false;
  /** Its stream channels were told that no more input will come. */
  private inputEnded = false;
  /** Frames taken from the decoder so far; tells the frame timer whether its frame has arrived. */
  private framesTaken = 0;
  /** framesTaken when the frame timer was armed: the frame it times is the one after those. */
  private frameTimerFor = -1;
  /** Budget bytes granted to the frame being received (0: none held). */
  private frameGrant = 0;
  /** Set while this connection waits for budget for the frame being received; aborts the wait. */
  private budgetWait: AbortController | undefined;
  /** jobId → number of active subscriptions (a wait and a watch may overlap). */
  private readonly watched = new Map<string, number>();
  private droppedEvents = 0;
  /** Bytes of progress events written but not yet taken by the kernel: the part of writableLength that was droppable. */
  private unsentEventBytes = 0;
  /** Resolved when the last request in flight answered (for drain). */
  private idleWaiters: Array<() => void> = [];
  private helloTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  /** Writes (answers and events) the kernel has taken whole from the write buffer: a stalled client takes none. */
  private writesTaken = 0;
  private frameTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Looks, after the client's end of stream, whether it closed its socket for good. */
  private hangUpTimer: NodeJS.Timeout | undefined;
  private readonly closedPromise: Promise<void>;

  constructor(id: number, socket: Socket, host: ConnectionHost, log: Logger, peerUid: number | undefined, peerCredentials?: UserCredentials) {
    this.id = id;
    this.socket = socket;
    this.host = host;
    this.log = log.child({ conn: id });
    this.decoder = new FrameDecoder(host.limits.maxFrameBytes);
    // Stream data is never dropped: the channel's credit window bounds it instead.
    this.channels = new StreamChannels((e) => this.send(e, false), () => this.updateIdleTimer(), host.limits.streamStallMs);
    this.ctx = {
      channels: this.channels,
      engine: host.engine,
      info: host.info,
      peerUid,
      peerCredentials,
      watch: (jobId) => this.watched.set(jobId, (this.watched.get(jobId) ?? 0) + 1),
      unwatch: (jobId) => {
        const n = this.watched.get(jobId);
        if (n === undefined) return;
        if (n <= 1) this.watched.delete(jobId);
        else this.watched.set(jobId, n - 1);
      },
      announce: (job) => {
        this.watched.set(job.id, (this.watched.get(job.id) ?? 0) + 1);
        this.send({ event: 'progress', jobId: job.id, job }, false);
      },
    };
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));

    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => {
      this.clearStallTimer();
      // The client read its answers: requests held back for it may run now.
      this.pump();
    });
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    socket.once('close', () => this.onClose());
    this.helloTimer = setTimeout(() => {
      this.fail(null, new BlocksnapError('ProtocolError', `no hello within ${host.limits.helloTimeoutMs} ms`));
    }, host.limits.helloTimeoutMs);
    this.helloTimer.unref();
    this.log.debug('client connected');
  }

  /** Resolves once the socket is fully closed. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Called for every job event of the engine; forwards the ones this client subscribed to. */
  onJob(job: Job): void {
    if (!this.watched.has(job.id)) return;
    const done = isFinished(job);
    // A watcher learns that a job ended only from its last event, so that one is never dropped.
    this.send({ event: 'progress', jobId: job.id, job }, !done);
    if (done) {
      this.watched.delete(job.id);
      if (this.peerEnded) this.pump(); // that may have been all a half-closed client waited for
      else this.updateIdleTimer();
    }
  }

  /**
   * Lets running requests answer, then closes. Used when the daemon stops; new requests meanwhile
   * get ShuttingDown from the host.
   */
  async drain(): Promise<void> {
    if (this.inFlight > 0 && !this.socket.destroyed) {
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
        this.socket.once('close', () => resolve());
      });
    }
    this.close();
    await this.closedPromise;
  }

  /** Ends the connection after the pending output, and destroys it if the client does not take it. */
  close(): void {
    if (this.state === 'closing') return;
    this.state = 'closing';
    this.clearTimers();
    this.releaseFrameBudget();
    this.socket.end();
    // Keep reading (and discarding, see onData) so that the peer's end of stream is seen and the
    // socket closes; a paused socket would wait for the grace timer.
    this.socket.resume();
    this.reading = true;
    setTimeout(() => this.socket.destroy(), this.host.limits.closeGraceMs).unref();
  }

  private isClosing(): boolean {
    return this.state === 'closing';
  }

  private onData(chunk: Buffer): void {
    if (this.isClosing()) return; // the stream is no longer interpreted
    try {
      this.decoder.append(chunk);
    } catch (err) {
      this.fail(null, toBlocksnapError(err));
      return;
    }
    this.pump();
  }

  /** The client will send nothing more; what it sent is still answered. */
  private onEnd(): void {
    if (this.isClosing()) return;
    this.peerEnded = true;
    this.pump();
    if (!this.isClosing() && !this.socket.destroyed) this.checkHangUp();
  }

  /**
   * Drops the client if it closed its socket for good; otherwise it only half-closed and waits for
   * its answers, and the check is repeated while any are due.
   */
  private checkHangUp(): void {
    this.hangUpTimer = undefined;
    if (this.isClosing() || this.socket.destroyed) return;
    if (peerOf(this.socket)?.hungUp === true) {
      this.log.debug({ inFlight: this.inFlight, watched: this.watched.size }, 'client hung up with answers due: disconnecting');
      this.socket.destroy();
      return;
    }
    this.hangUpTimer = setTimeout(() => this.checkHangUp(), this.host.limits.pausedProbeMs);
    this.hangUpTimer.unref();
  }

  /**
   * Runs the idle clock while the client has nothing running, nothing watched, no stream open and
   * nothing half-sent. An open stream counts: its job reads or writes through this connection
   * even while no request runs (an export whose reader is slow to acknowledge).
   */
  private updateIdleTimer(): void {
    const ms = this.host.limits.idleTimeoutMs;
    const idle = ms > 0 && this.state === 'ready' && !this.peerEnded && this.inFlight === 0
      && this.watched.size === 0 && this.channels.size === 0 && !this.decoder.midFrame;
    if (!idle) {
      this.clearIdleTimer();
      return;
    }
    if (this.idleTimer !== undefined) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.isClosing()) return;
      this.log.info({ ms }, 'closing an idle connection');
      this.reply(null, new BlocksnapError('DaemonUnavailable',
        `the daemon closed this connection after ${Math.round(ms / 1000)} s without a request; connect again`));
      this.close();
    }, ms);
    this.idleTimer.unref();
  }

  /** True while a further request of this client may start. */
  private canDispatch(): boolean {
    return !this.isClosing()
      && this.inFlight < this.host.limits.maxInFlight
      && this.socket.writableLength <= this.host.limits.eventHighWaterBytes;
  }

  /**
   * Takes frames from the decoder and starts their requests while the limits allow, then decides
   * whether to read on: the single place where reading is paused or resumed. Frames the limits
   * hold back stay in the decoder, and reading pauses, so they never pile up here.
   */
  private pump(): void {
    if (this.isClosing() || this.socket.destroyed) return;
    /** Every complete frame was taken: what is buffered is at most the start of the next. */
    let drained = false;
    while (this.canDispatch()) {
      let payload: Buffer | undefined;
      try {
        payload = this.decoder.next();
      } catch (err) {
        this.fail(null, toBlocksnapError(err));
        return;
      }
      if (payload === undefined) {
        drained = true;
        break;
      }
      this.framesTaken++;
      this.releaseFrameBudget();
      // A frame can close the connection (undecodable, version mismatch); the rest is not read.
      this.onFrame(payload);
      if (this.isClosing()) return;
    }
    const limits = this.host.limits;
    const blocked = !this.canDispatch() || !this.frameAdmitted();
    if (blocked && this.socket.writableLength > limits.maxBufferedBytes && this.decoder.pendingBytes > 0) {
      // It sends more while more than the most it may leave unread waits for it: it is not reading.
      this.log.warn({ buffered: this.socket.writableLength }, 'client does not read its responses: disconnecting');
      this.socket.destroy();
      return;
    }
    if (blocked && this.decoder.pendingBytes > limits.maxFrameBytes + FRAME_HEADER_BYTES + limits.maxQueuedBytes) {
      this.fail(null, new BlocksnapError('ProtocolError',
        `more than ${limits.maxQueuedBytes} bytes of requests queued while ${this.inFlight} requests run and ${this.socket.writableLength} bytes of answers are unread`));
      return;
    }
    if (this.peerEnded && (drained || blocked)) {
      if (!this.inputEnded) {
        // Nothing the client sent can feed or acknowledge a stream any more (everything is taken, or
        // what is left waits behind requests that may be waiting for that very stream): a stream
        // still needing the client fails now instead of holding its job and whoever waits for it.
        this.inputEnded = true;
        this.channels.inputEnded(new BlocksnapError('StreamClosed', 'the client closed its side of the connection before its stream ended'));
      }
      if (drained) {
        if (this.decoder.midFrame) {
          this.fail(null, new BlocksnapError('ProtocolError', 'the client closed its side of the connection in the middle of a frame'));
          return;
        }
        if (this.inFlight === 0 && this.watched.size === 0) {
          this.close();
          return;
        }
      }
    }
    this.setReading(!blocked);
    this.updateFrameTimer(blocked);
    this.updateIdleTimer();
  }

  private setReading(on: boolean): void {
    if (on) {
      this.clearProbeTimer();
      if (!this.reading) {
        this.reading = true;
        this.socket.resume();
      }
      return;
    }
    if (this.reading) {
      this.reading = false;
      this.socket.pause();
    }
    // Not while waiting for budget: the wait is bounded, and a probe would read on into the frame.
    if (this.probeTimer === undefined && !this.peerEnded && this.budgetWait === undefined) this.armProbe();
  }

  /**
   * True when the frame being received may be read on: no header taken yet, short, or granted its
   * bytes. (Called only once next() found no whole frame.) Otherwise asks the budget for them; the grant pumps again.
   */
  private frameAdmitted(): boolean {
    const length = this.decoder.expectedLength;
    if (length <= UNBUDGETED_FRAME_BYTES || this.frameGrant > 0) return true;
    if (this.budgetWait !== undefined) return false;
    const budget = this.host.frameBudget;
    if (budget.tryAcquire(length)) {
      this.frameGrant = length;
      return true;
    }
    const wait = new AbortController();
    this.budgetWait = wait;
    this.clearProbeTimer();
    void budget.acquire(length, wait.signal).then((granted) => {
      if (this.budgetWait === wait) this.budgetWait = undefined;
      if (!granted) return;
      if (this.isClosing() || this.socket.destroyed) {
        budget.release(length);
        return;
      }
      this.frameGrant = length;
      this.pump();
    });
    return false;
  }

  /** Gives back the frame's budget bytes, or stops waiting for them. */
  private releaseFrameBudget(): void {
    if (this.frameGrant > 0) this.host.frameBudget.release(this.frameGrant);
    this.frameGrant = 0;
    this.budgetWait?.abort();
    this.budgetWait = undefined;
  }

  /**
   * While the client is paused, reads one more chunk (or the end of stream) now and then; onData
   * then pumps, which pauses again. Skipped while answers are unsent: a write to a client that
   * hung up fails by itself, and reading more would only queue more.
   */
  private armProbe(): void {
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      if (this.isClosing() || this.reading || this.peerEnded || this.budgetWait !== undefined) return;
      if (this.socket.writableLength > 0) {
        this.armProbe();
        return;
      }
      this.reading = true;
      this.socket.resume();
    }, this.host.limits.pausedProbeMs);
    this.probeTimer.unref();
  }

  /**
   * A frame that has begun must arrive whole in time. Only while the client is read: a paused
   * client may be stuck writing the rest because the daemon does not read it.
   */
  private updateFrameTimer(blocked: boolean): void {
    if (blocked || !this.decoder.midFrame) {
      this.clearFrameTimer();
      return;
    }
    if (this.frameTimer !== undefined && this.frameTimerFor === this.framesTaken) return; // same frame, same deadline
    this.clearFrameTimer();
    this.frameTimerFor = this.framesTaken;
    const ms = this.host.limits.frameTimeoutMs;
    this.frameTimer = setTimeout(() => {
      this.frameTimer = undefined;
      this.fail(null, new BlocksnapError('ProtocolError', `a frame did not arrive whole within ${ms} ms of its first byte`));
    }, ms);
    this.frameTimer.unref();
  }

  private onFrame(payload: Buffer): void {
    let message: unknown;
    try {
      message = decodeRequestPayload(payload);
    } catch (err) {
      // Bytes that are not msgpack mean the peer does not speak this protocol: stop listening to it.
      this.fail(null, toBlocksnapError(err));
      return;
    }
    let request;
    try {
      request = parseRequest(message);
    } catch (err) {
      // A well-formed map with a bad envelope is a client bug: answer it and keep the connection.
      const e = toBlocksnapError(err);
      this.reply((e.details?.id as RequestId | undefined) ?? null, e);
      return;
    }
    const { id, method, params } = request;
    if (this.state === 'hello' && method !== 'hello') {
      const message = this.helloInFlight > 0
        ? `${method} was sent before hello was answered; send other requests once hello has succeeded`
        : `the first request must be hello, got ${method}`;
      this.reply(id, new BlocksnapError('ProtocolError', message));
      return;
    }
    const spec = lookupMethod(method);
    if (spec === undefined) {
      this.reply(id, new BlocksnapError('UnknownMethod', `unknown method ${JSON.stringify(method.slice(0, 100))}`));
      return;
    }
    if (this.host.isShuttingDown()) {
      this.reply(id, new BlocksnapError('ShuttingDown', 'the daemon is shutting down'));
      return;
    }
    const started = Date.now();
    const isHello = method === 'hello';
    if (isHello) this.helloInFlight++;
    this.inFlight++;
    spec.call(this.ctx, params).then(
      (result) => {
        if (isHello && this.state === 'hello') {
          this.state = 'ready';
          this.clearHelloTimer();
        }
        this.log.debug({ id, method, ms: Date.now() - started }, 'request done');
        this.send({ id, result }, false);
      },
      (err: unknown) => {
        const e = toBlocksnapError(err);
        if (e.code === 'Internal') this.log.error({ err, id, method }, 'request failed with an internal error');
        else this.log.debug({ id, method, code: e.code, ms: Date.now() - started }, 'request failed');
        if (e.code === 'VersionMismatch') this.fail(id, e);
        else this.reply(id, e);
      },
    ).finally(() => {
      if (isHello) this.helloInFlight--;
      this.inFlight--;
      if (this.inFlight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      this.pump();
    });
  }

  private reply(id: RequestId | null, err: BlocksnapError): void {
    const body: ErrorBody = { code: err.code, message: err.message };
    if (err.details !== undefined) {
      const { id: _id, ...rest } = err.details;
      if (Object.keys(rest).length > 0) body.details = rest;
    }
    this.send({ id, error: body }, false);
  }

  /** Answers with an error and closes: for streams that can no longer be trusted. */
  private fail(id: RequestId | null, err: BlocksnapError): void {
    if (this.state === 'closing') return;
    this.log.warn({ code: err.code, reason: err.message }, 'closing connection after a protocol error');
    this.reply(id, err);
    this.close();
  }

  private send(message: ServerMessage, droppable: boolean): void {
    const socket = this.socket;
    if (socket.destroyed || socket.writableEnded) return;
    const limits = this.host.limits;
    if (droppable && socket.writableLength > limits.eventHighWaterBytes) {
      if (this.droppedEvents++ === 0) this.log.debug('client reads slowly: dropping progress events');
      return;
    }
    let bytes: Buffer;
    try {
      bytes = frame(encodeMessage(message));
    } catch (err) {
      // A result the codec cannot represent is our bug; the caller still gets an answer.
      this.log.error({ err }, 'cannot encode a message');
      if ('id' in message && !('error' in message)) {
        bytes = frame(encodeMessage({ id: message.id, error: { code: 'Internal', message: `cannot encode the result: ${(err as Error).message}` } }));
      } else return;
    }
    // Judged before writing, so one large answer to a client that reads is never refused.
    if (socket.writableLength > limits.maxBufferedBytes) {
      this.log.warn({ buffered: socket.writableLength }, 'client does not read its responses: disconnecting');
      socket.destroy();
      return;
    }
    if (!droppable) {
      socket.write(bytes, () => { this.writesTaken++; });
      this.armStallTimer();
      return;
    }
    const n = bytes.length;
    this.unsentEventBytes += n;
    // The callback runs once the kernel took the bytes, or the socket failed: either way they left the buffer.
    socket.write(bytes, () => { this.unsentEventBytes -= n; this.writesTaken++; });
  }

  /**
   * Starts the clock on a client that leaves too much of what cannot be dropped unread. Progress
   * events below the high-water mark are left out: the most they add up to is bounded by the
   * mark itself, since none is written above it.
   */
  private armStallTimer(): void {
    const socket = this.socket;
    const limits = this.host.limits;
    if (this.stallTimer !== undefined) return;
    if (socket.writableLength - this.unsentEventBytes <= limits.eventHighWaterBytes) return;
    const taken = this.writesTaken;
    const queued = this.unsentInWrite();
    this.stallTimer = setTimeout(() => {
      // 'drain' comes only when the buffer is empty, which a client that reads steadily may not
      // let happen for a long while: one large answer, or the next answers written as it reads.
      // Any write the kernel took whole since the clock started, or any part of the write under way,
      // shows that it reads, so the clock starts again.
      if (this.writesTaken !== taken || this.unsentInWrite() !== queued) {
        this.stallTimer = undefined;
        this.armStallTimer();
        return;
      }
      this.log.warn({ buffered: socket.writableLength, events: this.unsentEventBytes }, `client read nothing for ${limits.stallTimeoutMs} ms: disconnecting`);
      socket.destroy();
    }, limits.stallTimeoutMs);
    this.stallTimer.unref();
  }

  /**
   * The bytes of the write under way that the kernel has not taken yet: libuv's count, which
   * falls as a client reads through one large answer, while the stream's own count falls only
   * when that whole write is done. Undefined where the socket has no handle (closed).
   */
  private unsentInWrite(): number | undefined {
    return (this.socket as unknown as { _handle?: { writeQueueSize?: number } })._handle?.writeQueueSize;
  }

  private clearStallTimer(): void {
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (this.droppedEvents > 0) {
      this.log.debug({ dropped: this.droppedEvents }, 'client caught up');
      this.droppedEvents = 0;
    }
  }

  private clearHelloTimer(): void {
    if (this.helloTimer !== undefined) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
  }

  private clearFrameTimer(): void {
    if (this.frameTimer !== undefined) clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
  }

  private clearProbeTimer(): void {
    if (this.probeTimer !== undefined) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private clearTimers(): void {
    this.clearHelloTimer();
    this.clearFrameTimer();
    this.clearProbeTimer();
    this.clearIdleTimer();
    if (this.hangUpTimer !== undefined) clearTimeout(this.hangUpTimer);
    this.hangUpTimer = undefined;
  }

  private onClose(): void {
    this.state = 'closing';
    this.clearTimers();
    this.releaseFrameBudget();
    this.clearStallTimer();
    this.watched.clear();
    this.channels.closeAll(new BlocksnapError('StreamClosed', 'the client disconnected before its stream ended'));
    this.log.debug('client disconnected');
  }
}
