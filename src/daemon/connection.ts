/**
 * One client connection. State: waiting for hello → ready → closing. Holds the frame decoder, the
 * count of requests in flight, and the jobs whose progress the client subscribed to.
 *
 * A connection must never be able to hurt the daemon or other clients:
 *  - every request runs in its own promise whose failure becomes an error response;
 *  - a stream that cannot be trusted any more (bad length prefix, undecodable frame) gets one
 *    error and is closed, because there is no way to find the next frame boundary;
 *  - outgoing data is bounded: progress events are dropped for a client whose socket buffer is
 *    above a high-water mark (the final response still carries the end state), and a client that
 *    stops reading altogether is disconnected rather than buffered for without limit;
 *  - reading pauses while too many requests are in flight, pushing back on a flooding client
 *    through the socket instead of queueing its requests in memory.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { Job } from '../engine/types';
import { isFinished, type DaemonEngine } from './engine-port';
import { lookupMethod, type CallContext, type DaemonInfo } from './methods';
import { FrameDecoder, frame } from './protocol/frame';
import { StreamChannels } from './stream-channels';
import { decodeMessage, encodeMessage, parseRequest, type ErrorBody, type RequestId, type ServerMessage } from './protocol/messages';

export interface ConnectionLimits {
  /** Largest request frame accepted. */
  maxFrameBytes: number;
  /** Above this many unsent bytes, progress events for the client are dropped. */
  eventHighWaterBytes: number;
  /** Above this many unsent bytes, the client is disconnected: it is not reading. */
  maxBufferedBytes: number;
  /** A client whose buffer stays above the high-water mark this long without draining is disconnected. */
  stallTimeoutMs: number;
  /** A client that sends no successful hello within this time is disconnected. */
  helloTimeoutMs: number;
  /** Reading from the client pauses while this many of its requests are running. */
  maxInFlight: number;
  /** Time allowed to flush the last bytes when closing before the socket is destroyed. */
  closeGraceMs: number;
}

export const DEFAULT_LIMITS: Omit<ConnectionLimits, 'maxFrameBytes'> = {
  eventHighWaterBytes: 256 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
  stallTimeoutMs: 30_000,
  helloTimeoutMs: 10_000,
  maxInFlight: 64,
  closeGraceMs: 2_000,
};

export interface ConnectionHost {
  readonly engine: DaemonEngine;
  readonly info: DaemonInfo;
  readonly limits: ConnectionLimits;
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
  private paused = false;
  /** jobId → number of active subscriptions (a wait and a watch may overlap). */
  private readonly watched = new Map<string, number>();
  private droppedEvents = 0;
  /** Resolved when the last request in flight answered (for drain). */
  private idleWaiters: Array<() => void> = [];
  private helloTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private readonly closedPromise: Promise<void>;

  constructor(id: number, socket: Socket, host: ConnectionHost, log: Logger) {
    this.id = id;
    this.socket = socket;
    this.host = host;
    this.log = log.child({ conn: id });
    this.decoder = new FrameDecoder(host.limits.maxFrameBytes);
    // Stream data is never dropped: the channel's credit window bounds it instead.
    this.channels = new StreamChannels((e) => this.send(e, false));
    this.ctx = {
      channels: this.channels,
      engine: host.engine,
      info: host.info,
      watch: (jobId) => this.watched.set(jobId, (this.watched.get(jobId) ?? 0) + 1),
      unwatch: (jobId) => {
        const n = this.watched.get(jobId);
        if (n === undefined) return;
        if (n <= 1) this.watched.delete(jobId);
        else this.watched.set(jobId, n - 1);
      },
    };
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));

    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.clearStallTimer());
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
    if (done) this.watched.delete(job.id);
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
    this.clearHelloTimer();
    this.socket.end();
    // Keep reading (and discarding, see onData) so that the peer's end of stream is seen and the
    // socket closes; a paused socket would wait for the grace timer.
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), this.host.limits.closeGraceMs).unref();
  }

  private isClosing(): boolean {
    return this.state === 'closing';
  }

  private onData(chunk: Buffer): void {
    if (this.isClosing()) return; // the stream is no longer interpreted
    let payloads: Buffer[];
    try {
      payloads = this.decoder.push(chunk);
    } catch (err) {
      this.fail(null, toBlocksnapError(err));
      return;
    }
    for (const payload of payloads) {
      this.onFrame(payload);
      // A frame can close the connection (undecodable, version mismatch); the rest is not read.
      if (this.isClosing()) return;
    }
  }

  private onFrame(payload: Buffer): void {
    let message: unknown;
    try {
      message = decodeMessage(payload);
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
    if (this.inFlight >= this.host.limits.maxInFlight && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    spec.call(this.ctx, params).then(
      (result) => {
        if (isHello) {
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
      if (this.paused && this.inFlight < this.host.limits.maxInFlight && this.state !== 'closing') {
        this.paused = false;
        this.socket.resume();
      }
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
    this.log.warn({ code: err.code, msg: err.message }, 'closing connection after a protocol error');
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
    socket.write(bytes);
    if (socket.writableLength > limits.eventHighWaterBytes && this.stallTimer === undefined) {
      this.stallTimer = setTimeout(() => {
        this.log.warn({ buffered: socket.writableLength }, `client read nothing for ${limits.stallTimeoutMs} ms: disconnecting`);
        socket.destroy();
      }, limits.stallTimeoutMs);
      this.stallTimer.unref();
    }
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

  private onClose(): void {
    this.state = 'closing';
    this.clearHelloTimer();
    this.clearStallTimer();
    this.watched.clear();
    this.channels.closeAll(new BlocksnapError('StreamClosed', 'the client disconnected before its stream ended'));
    this.log.debug('client disconnected');
  }
}
