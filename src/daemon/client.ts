/**
 * A protocol client: one connection, the hello exchange, any number of calls in flight matched by
 * id, and the progress events of subscribed jobs. Used by the CLI; usable by any Node program.
 */
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { BlocksnapError, type ErrorCode } from '../errors';
import { buildId } from './build-info';
import type { Job } from '../engine/types';
import { fileKind } from './socket-file';
import { FrameDecoder, frame } from './protocol/frame';
import { decodeMessage, encodeMessage, isPlainMap, PROTOCOL_VERSION, type DataEvent, type Params, type ProgressEvent } from './protocol/messages';

export interface ClientOptions {
  socketPath: string;
  /** Sent in hello; shows up in the daemon's debug log. */
  clientName?: string;
  /** For connect(), and again for the answer to hello. */
  connectTimeoutMs?: number;
  /** Largest response accepted; listings of big catalogs can be large. */
  maxFrameBytes?: number;
}

export interface HelloResult {
  protocol: number;
  version: string;
  /** Absent from daemons older than the field (src/daemon/build-info.ts). */
  build?: string;
  pid: number;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: BlocksnapError): void;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_CLIENT_MAX_FRAME_BYTES = 512 * 1024 * 1024;

/**
 * What is at a socket path that refused the connection, when it is not a socket: a --socket given
 * the data dir, an image or the socket's directory is a wrong path, not a daemon that is down.
 */
function notASocket(path: string): string | null {
  try {
    const st = statSync(path);
    return st.isSocket() ? null : fileKind(path, st);
  } catch {
    return null;
  }
}

function connectError(path: string, err: NodeJS.ErrnoException): BlocksnapError {
  switch (err.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
    case 'ENOTSOCK': {
      const found = err.code === 'ENOENT' ? null : notASocket(path);
      if (found !== null) {
        return new BlocksnapError('DaemonUnavailable',
          `${path} is ${found}, not a socket: pass the daemon's control socket (its --socket) with --socket or BLOCKSNAP_SOCKET`, { socket: path, found });
      }
      return new BlocksnapError('DaemonUnavailable', `no blocksnap daemon is listening on ${path} (start one with "blocksnap daemon", or pass --socket)`, { socket: path });
    }
    case 'EACCES':
    case 'EPERM':
      return new BlocksnapError('PermissionDenied', `cannot connect to ${path}: permission denied (only the daemon's user may connect, and the members of its --socket-group if it has one: is your user in that group, and may it search every directory above the socket?)`, { socket: path });
    default:
      return new BlocksnapError('DaemonUnavailable', `cannot connect to ${path}: ${err.message}`, { socket: path });
  }
}

/** What an NBD server sends first (the NBD greeting), as the daemon's NBD socket does. */
const NBD_GREETING = Buffer.from('NBDMAGIC');

/**
 * Whatever went wrong before hello was answered means no blocksnap daemon speaks on the socket:
 * said so, rather than as the garbage decoded (the NBD greeting read as a frame length is a
 * FrameTooLarge of 1.3 GB).
 */
function notBlocksnap(path: string, firstBytes: Buffer, err: unknown): BlocksnapError {
  if (firstBytes.length >= NBD_GREETING.length && firstBytes.subarray(0, NBD_GREETING.length).equals(NBD_GREETING)) {
    return new BlocksnapError('DaemonUnavailable',
      `${path} is an NBD socket (it sent the NBD greeting), not the daemon's control socket: pass the control socket with --socket (or BLOCKSNAP_SOCKET)`, { socket: path });
  }
  const why = err instanceof Error ? err.message : String(err);
  return new BlocksnapError('DaemonUnavailable', `${path} is not a blocksnap control socket: what it sent is not the blocksnap protocol (${why})`, { socket: path });
}

export interface DaemonClientEvents {
  progress: [event: ProgressEvent];
  /** A chunk of a snapshot stream the daemon sends (snapshot.export with a stream id). */
  data: [event: DataEvent];
  close: [];
}

export class DaemonClient extends EventEmitter<DaemonClientEvents> {
  private readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closedError: BlocksnapError | null = null;
  private hello: HelloResult | null = null;
  /** Until hello is answered: the first bytes the peer sent, to tell what it is if it is not a daemon. */
  private firstBytes: Buffer | null = Buffer.alloc(0);

  private constructor(socket: Socket, private readonly socketPath: string, maxFrameBytes: number) {
    super();
    this.socket = socket;
    this.decoder = new FrameDecoder(maxFrameBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // surfaced through 'close' as a rejection of pending calls
    socket.on('close', () => {
      this.closedError ??= new BlocksnapError('DaemonUnavailable', `the daemon on ${socketPath} closed the connection`);
      this.failAll(this.closedError);
      this.emit('close');
    });
  }

  /** Connects and completes the hello exchange. */
  static async connect(o: ClientOptions): Promise<DaemonClient> {
    const timeoutMs = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(o.socketPath);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new BlocksnapError('DaemonUnavailable', `the daemon on ${o.socketPath} did not accept the connection within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(connectError(o.socketPath, err));
      });
    });
    const client = new DaemonClient(socket, o.socketPath, o.maxFrameBytes ?? DEFAULT_CLIENT_MAX_FRAME_BYTES);
    // A Unix socket accepts from its listen backlog whether or not anyone serves it (a stopped or
    // frozen daemon, another program): without a deadline on the answer, the command would hang.
    const timer = setTimeout(() => {
      client.closedError ??= new BlocksnapError('DaemonUnavailable',
        `connected to ${o.socketPath} but no blocksnap daemon answered within ${formatSeconds(timeoutMs)} (is the daemon stopped or frozen, or is this another program's socket?)`,
        { socket: o.socketPath });
      socket.destroy();
    }, timeoutMs);
    try {
      const params: Params = { protocol: PROTOCOL_VERSION };
      if (o.clientName !== undefined) params.client = o.clientName;
      client.hello = await client.call<HelloResult>('hello', params);
      client.firstBytes = null;
    } catch (err) {
      client.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** What the daemon said in hello. */
  get daemon(): HelloResult {
    if (this.hello === null) throw new BlocksnapError('Internal', 'hello has not completed');
    return this.hello;
  }

  call<T = unknown>(method: string, params: Params = {}): Promise<T> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(frame(encodeMessage({ id, method, params })));
    });
  }

  /** Waits for a job to end, receiving its progress events meanwhile; resolves in any end state. */
  waitJob(jobId: string, onProgress?: (job: Job) => void): Promise<Job> {
    if (onProgress === undefined) return this.call<Job>('job.wait', { job: jobId });
    const listener = (ev: ProgressEvent): void => {
      if (ev.jobId === jobId) onProgress(ev.job);
    };
    this.on('progress', listener);
    return this.call<Job>('job.wait', { job: jobId }).finally(() => this.off('progress', listener));
  }

  close(): void {
    if (this.closedError === null) this.closedError = new BlocksnapError('DaemonUnavailable', 'the connection was closed by the client');
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.firstBytes !== null && this.firstBytes.length < NBD_GREETING.length) {
      this.firstBytes = Buffer.concat([this.firstBytes, chunk.subarray(0, NBD_GREETING.length - this.firstBytes.length)]);
    }
    let payloads: Buffer[];
    try {
      payloads = this.decoder.push(chunk);
      for (const p of payloads) this.onMessage(decodeMessage(p));
    } catch (err) {
      if (this.firstBytes !== null) this.closedError = notBlocksnap(this.socketPath, this.firstBytes, err);
      else this.closedError = err instanceof BlocksnapError ? err : new BlocksnapError('ProtocolError', String(err));
      this.socket.destroy();
    }
  }

  private onMessage(msg: unknown): void {
    if (!isPlainMap(msg)) throw new BlocksnapError('ProtocolError', 'the daemon sent something other than a map');
    if (msg.event === 'progress') {
      this.emit('progress', msg as unknown as ProgressEvent);
      return;
    }
    if (msg.event === 'data') {
      if (typeof msg.stream !== 'string' || typeof msg.seq !== 'number' || !(msg.data instanceof Uint8Array)) {
        throw new BlocksnapError('ProtocolError', 'the daemon sent a malformed data event');
      }
      this.emit('data', { event: 'data', stream: msg.stream, seq: msg.seq, data: Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength) });
      return;
    }
    if (msg.id === null && isPlainMap(msg.error)) {
      // An error the daemon could not attribute to a call is about the whole connection.
      this.closedError = remoteError(msg.error, this.hello ?? undefined);
      return;
    }
    const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
    if (p === undefined) return; // a response to a call that already failed locally
    this.pending.delete(msg.id as number);
    if (isPlainMap(msg.error)) p.reject(remoteError(msg.error, this.hello ?? undefined));
    else p.resolve(msg.result);
  }

  private failAll(err: BlocksnapError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** "5 s", or "0.2 s" for a short test timeout. */
function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * The daemon's error as a BlocksnapError. A code this client does not know (a newer daemon) is
 * kept as is: scripts match on the daemon's code, not on this client's registry. `daemon`: what
 * it said in hello, once answered.
 */
export function remoteError(e: Record<string, unknown>, daemon?: Pick<HelloResult, 'version' | 'build'>): BlocksnapError {
  const code = typeof e.code === 'string' ? e.code : 'Internal';
  const message = typeof e.message === 'string' ? e.message : 'the daemon returned an error without a message';
  const details = isPlainMap(e.details) ? e.details : undefined;
  return new BlocksnapError(code as ErrorCode, message + otherBuildHint(code, message, daemon), details);
}

/**
 * This client sends only methods and params its own build's daemon knows. A daemon that does not
 * know one runs other code (protocol 1 grows by additions: most likely an older build not yet
 * restarted), which its answer alone does not say. A daemon of this very build refusing one is
 * no version matter (a call made by hand, or a defect), and is reported as it worded it.
 */
function otherBuildHint(code: string, message: string, daemon?: Pick<HelloResult, 'version' | 'build'>): string {
  const unknown = code === 'UnknownMethod' || (code === 'InvalidArgument' && /^params\.[\w.]+ must be absent/.test(message));
  if (!unknown || (daemon?.build !== undefined && daemon.build === buildId())) return '';
  const which = daemon === undefined ? '' : ` (${daemon.version}${daemon.build !== undefined ? `, build ${daemon.build}` : ''})`;
  return `; the daemon${which} runs other code than this client, most likely an older build: upgrade and restart it (blocksnap version shows both)`;
}
