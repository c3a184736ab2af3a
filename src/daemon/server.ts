/**
 * The socket server: accepts clients, fans engine job events out to the connections that
 * subscribed, and stops in order (stop accepting → let the engine stop its jobs, which answers
 * the waiting clients → close the connections).
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ByteBudget } from '../byte-budget';
import { BlocksnapError } from '../errors';
import type { Job } from '../engine/types';
import { Connection, type ConnectionHost, type ConnectionLimits } from './connection';
import type { DaemonEngine } from './engine-port';
import type { DaemonInfo } from './methods';
import { claimSocketPath, setSocketAccess } from './socket-file';
import { peerOf } from './socket-peer';
import { peerCredentials } from './peer-credentials';
import { frame } from './protocol/frame';
import { encodeMessage } from './protocol/messages';

export interface ServerOptions {
  socketPath: string;
  socketMode: number;
  socketGid?: number;
  limits: ConnectionLimits;
  /** Beyond this many clients, a new connection gets one DaemonUnavailable error and is closed. */
  maxConnections: number;
  /**
   * The same for the clients of one user (the peer's uid): a client of one user that leaks
   * connections cannot lock every other user out.
   */
  maxConnectionsPerUser: number;
}

/**
 * Connections past a limit that may be open at once while they are told why they are refused;
 * past those, new connections are dropped without a word (Node's server limit past
 * maxConnections; a count here for the per-user limit, whose refusals Node's limit does not
 * bound before they fill every slot), so a connection flood cannot pile refusals up.
 */
const REFUSING_MAX = 16;
/** At most one log line per this many ms about refused connections. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export class DaemonServer implements ConnectionHost {
  readonly engine: DaemonEngine;
  readonly info: DaemonInfo;
  readonly limits: ConnectionLimits;
  readonly frameBudget: ByteBudget;
  private readonly options: ServerOptions;
  private readonly log: Logger;
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  /** uid → its open connections. */
  private readonly perUser = new Map<number, number>();
  private nextConnectionId = 1;
  private shuttingDown = false;
  private refusedSinceLog = 0;
  /** Refused connections still open (being told why). */
  private refusing = 0;
  private lastRefusalLog = 0;
  private readonly onJob = (job: Job): void => {
    for (const c of this.connections) c.onJob(job);
  };

  constructor(engine: DaemonEngine, info: DaemonInfo, options: ServerOptions, log: Logger) {
    this.engine = engine;
    this.info = info;
    this.options = options;
    this.limits = options.limits;
    this.frameBudget = new ByteBudget(options.limits.frameBudgetBytes);
    this.log = log;
    // Half-open: a client may shut down its sending side and still read the answers to what it sent.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (socket) => this.accept(socket));
    this.server.maxConnections = options.maxConnections + REFUSING_MAX;
    this.server.on('drop', () => this.noteRefusal('--max-connections'));
    this.server.on('error', (err) => this.log.error({ err }, 'server socket error'));
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  get clientCount(): number {
    return this.connections.size;
  }

  /** Claims the socket path, listens, and opens the socket to its group. */
  async listen(): Promise<void> {
    const { socketPath } = this.options;
    const { removedStale } = await claimSocketPath(socketPath);
    if (removedStale) this.log.info({ socket: socketPath }, 'removed a stale socket file');
    // bind() creates the file with mode 0777 & ~umask; a umask of 0177 keeps it private until
    // chmod gives the group access, so no client can slip in between under a laxer mode.
    const oldUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException): void => {
          reject(err.code === 'EADDRINUSE'
            ? new BlocksnapError('SocketInUse', `another process bound ${socketPath} while this daemon was starting`)
            : err);
        };
        this.server.once('error', onError);
        this.server.listen(socketPath, () => {
          this.server.off('error', onError);
          resolve();
        });
      });
    } finally {
      process.umask(oldUmask);
    }
    try {
      await setSocketAccess(socketPath, this.options.socketMode, this.options.socketGid);
    } catch (err) {
      // close() unlinks the socket: a daemon that did not start leaves no socket file behind.
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
      throw err;
    }
    this.engine.on('job', this.onJob);
  }

  /** Refuses new connections and new requests; requests already running go on. */
  stopAccepting(): void {
    this.shuttingDown = true;
    // close()'s callback fires only once every connection ended, which closeConnections() drives.
    this.server.close();
  }

  /** Lets every connection answer its running requests, then closes them all. */
  async closeConnections(): Promise<void> {
    await Promise.all([...this.connections].map((c) => c.drain()));
    this.engine.off('job', this.onJob);
  }

  private accept(socket: Socket): void {
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.options.maxConnections) {
      this.refuse(socket, `the daemon serves at most ${this.options.maxConnections} clients at once and all are connected; try again later`, '--max-connections');
      return;
    }
    // Read once at accept: SO_PEERCRED is fixed when the client connects.
    const peer = peerOf(socket);
    const uid = peer?.uid;
    const ofUser = uid === undefined ? 0 : this.perUser.get(uid) ?? 0;
    if (uid !== undefined && ofUser >= this.options.maxConnectionsPerUser) {
      this.refuse(socket, `the daemon serves at most ${this.options.maxConnectionsPerUser} clients of one user at once and uid ${uid} has that many connected; close some (or raise --max-connections-per-user)`, '--max-connections-per-user');
      return;
    }
    // Only a client whose rights are checked needs its groups (client-rights.ts).
    const credentials = uid === 0 || uid === process.getuid?.() ? undefined : peerCredentials(peer);
    const conn = new Connection(this.nextConnectionId++, socket, this, this.log, uid, credentials);
    this.connections.add(conn);
    if (uid !== undefined) this.perUser.set(uid, ofUser + 1);
    void conn.closed.then(() => {
      this.connections.delete(conn);
      if (uid === undefined) return;
      const n = (this.perUser.get(uid) ?? 1) - 1;
      if (n === 0) this.perUser.delete(uid);
      else this.perUser.set(uid, n);
    });
  }

  /** Tells a client past a connection limit why it is turned away, then closes its socket. */
  private refuse(socket: Socket, message: string, limit: string): void {
    this.noteRefusal(limit);
    if (this.refusing >= REFUSING_MAX) {
      socket.destroy();
      return;
    }
    this.refusing++;
    socket.once('close', () => this.refusing--);
    socket.on('error', () => socket.destroy());
    // Whatever the client sent is read and dropped: closing a Unix socket with unread input would
    // turn the client's read of the answer into a reset.
    socket.resume();
    socket.end(frame(encodeMessage({ id: null, error: { code: 'DaemonUnavailable', message } })));
    setTimeout(() => socket.destroy(), this.limits.closeGraceMs).unref();
  }

  private noteRefusal(limit: string): void {
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusalLog < REFUSAL_LOG_INTERVAL_MS) return;
    this.log.warn({ refused: this.refusedSinceLog, maxConnections: this.options.maxConnections, maxConnectionsPerUser: this.options.maxConnectionsPerUser },
      `refusing connections: the client limit is reached (${limit})`);
    this.lastRefusalLog = now;
    this.refusedSinceLog = 0;
  }
}
