/**
 * The NBD server: a Unix socket (the control socket's mode and group) on which each
 * connection negotiates one export by name and then reads and writes it. Exports come from an
 * ExportTable (the engine's); the server holds only its connections.
 *
 * A connection's life: handshake → transmission → closed. Whatever one client sends, the worst
 * outcome is that its own connection closes (ProtocolViolation, a socket error, an unexpected
 * exception): nothing is shared between connections but the export's backend and the memory
 * budget. A handshake has a deadline, and only so many may be under way at once (the oldest goes
 * first), so idle sockets cannot fill the connection limit and lock clients out.
 *
 * Ending connections from this side (an export stopped or dropping its clients, the server
 * closing) is graceful and bounded: Transmission.shutdown.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { claimSocketPath, setSocketAccess } from '../daemon/socket-file';
import { BlocksnapError } from '../errors';
import type { ExportTable } from './backend';
import { ByteReader, ConnectionClosed } from './byte-reader';
import { Handshake, ProtocolViolation } from './handshake';
import { ByteBudget } from '../byte-budget';
import { ReplyBuffers } from './reply-buffers';
import { STALL_MS, Transmission } from './transmission';

export interface NbdLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface NbdServerOptions {
  socketPath: string;
  socketMode: number;
  socketGid?: number;
  /** Connections beyond this are refused. */
  maxConnections?: number;
  /** A connection that has not finished its handshake after this long is closed. */
  handshakeTimeoutMs?: number;
  /** Connections in the handshake at once; a new one beyond this closes the oldest. */
  maxHandshakes?: number;
  /** How long connections ended from this side may take to finish their running requests. */
  shutdownGraceMs?: number;
  /**
   * How long a client may leave its replies untaken, while some are queued, or take to send a
   * write's payload, before it is dropped (STALL_MS).
   */
  stallMs?: number;
}

export const HANDSHAKE_TIMEOUT_MS = 10_000;
export const MAX_HANDSHAKES = 64;
export const SHUTDOWN_GRACE_MS = 2_000;

/** 64 MiB: sixteen 4 MiB pieces, or many small requests, across every client at once. */
export const NBD_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
/**
 * Of those, what writes longer than a piece may hold while the rest of their payload arrives
 * (one piece each): half, so that clients stopped in the middle of one leave the other half to
 * everything else.
 */
export const NBD_LONG_WRITE_BYTES = NBD_BYTES_IN_FLIGHT / 2;

export class NbdServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Connections still in the handshake, oldest first. */
  private readonly handshaking = new Set<Socket>();
  private readonly transmissions = new Set<Transmission>();
  /** Request data held over all connections, queued replies included: the daemon's NBD memory stays within this. */
  private readonly budget = new ByteBudget(NBD_BYTES_IN_FLIGHT);
  private readonly longWrites = new ByteBudget(NBD_LONG_WRITE_BYTES);
  /** Idle reply Buffers kept for reuse: at most half the bytes that may be in flight. */
  private readonly buffers = new ReplyBuffers(NBD_BYTES_IN_FLIGHT / 2);
  private nextId = 1;
  private stopping = false;

  constructor(private readonly exports: ExportTable, private readonly o: NbdServerOptions, private readonly log: NbdLog) {
    this.server = createServer({ allowHalfOpen: false }, (s) => this.accept(s));
    this.server.maxConnections = o.maxConnections ?? 1024;
    this.server.on('error', (err) => this.log.warn({ err }, 'NBD server socket error'));
  }

  get socketPath(): string { return this.o.socketPath; }
  get connectionCount(): number { return this.sockets.size; }
  /** Reply bytes queued on the connections that their clients have not taken yet. */
  get unsentBytes(): number {
    let n = 0;
    for (const s of this.sockets) n += s.writableLength;
    return n;
  }
  /** Request data held across the connections (see ByteBudget). */
  get bytesInFlight(): number { return this.budget.inFlight; }

  async listen(): Promise<void> {
    const path = this.o.socketPath;
    const { removedStale } = await claimSocketPath(path);
    if (removedStale) this.log.info({ socket: path }, 'removed a stale NBD socket file');
    // As the control socket: created private, opened to its group only once the mode is set.
    const oldUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException): void => {
          reject(err.code === 'EADDRINUSE' ? new BlocksnapError('SocketInUse', `another process bound ${path}`) : err);
        };
        this.server.once('error', onError);
        this.server.listen(path, () => {
          this.server.off('error', onError);
          resolve();
        });
      });
    } finally {
      process.umask(oldUmask);
    }
    try {
      await setSocketAccess(path, this.o.socketMode, this.o.socketGid);
    } catch (err) {
      // close() unlinks the socket: a daemon that did not start leaves no socket file behind.
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
      throw err;
    }
  }

  /**
   * Stops accepting and ends every connection: a handshake is answered NBD_REP_ERR_SHUTDOWN from
   * now on, a transmission shuts down (running requests finish, later ones get NBD_ESHUTDOWN);
   * whatever is still open after the grace period is destroyed.
   */
  async close(): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const t of this.transmissions) void t.shutdown();
    const grace = this.o.shutdownGraceMs ?? SHUTDOWN_GRACE_MS;
    const late = setTimeout(() => { for (const s of this.sockets) s.destroy(); }, grace);
    try {
      await closed;
    } finally {
      clearTimeout(late);
      this.buffers.release();
    }
  }

  private accept(socket: Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.handshaking.delete(socket);
    });
    if (this.handshaking.size >= (this.o.maxHandshakes ?? MAX_HANDSHAKES)) {
      const oldest = this.handshaking.values().next().value!;
      this.handshaking.delete(oldest);
      this.log.warn({ connection: id }, 'too many NBD handshakes under way: closing the oldest');
      oldest.destroy();
    }
    this.handshaking.add(socket);
    socket.on('error', () => undefined); // reported through the reader as a closed connection
    void this.serve(id, socket);
  }

  private async serve(id: number, socket: Socket): Promise<void> {
    const reader = new ByteReader(socket);
    let detach: (() => void) | null = null;
    let transmission: Transmission | null = null;
    const deadline = setTimeout(() => {
      this.log.info({ connection: id }, 'NBD handshake not finished in time: closing the connection');
      socket.destroy();
    }, this.o.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
    try {
      const n = await new Handshake(socket, reader, this.exports, () => this.stopping).run().finally(() => {
        clearTimeout(deadline);
        this.handshaking.delete(socket);
      });
      // NBD_OPT_EXPORT_NAME has no error reply, so a client that used it as the server began to close just goes.
      if (n === null || this.stopping) return;
      const t = new Transmission(socket, reader, n, this.log, this.budget, this.longWrites, this.buffers,
        this.o.shutdownGraceMs ?? SHUTDOWN_GRACE_MS, this.o.stallMs ?? STALL_MS);
      transmission = t;
      this.transmissions.add(t);
      detach = n.export.attach({ close: (reason) => {
        this.log.info({ connection: id, export: n.export.name, reason }, 'NBD connection dropped');
        return t.shutdown();
      } });
      this.log.debug({ connection: id, export: n.export.name, structured: n.structured }, 'NBD client attached');
      await t.run();
    } catch (err) {
      if (err instanceof ProtocolViolation) this.log.warn({ connection: id, reason: err.message }, 'NBD protocol violation: closing the connection');
      else if (!(err instanceof ConnectionClosed)) this.log.warn({ connection: id, err }, 'NBD connection failed');
    } finally {
      if (transmission) this.transmissions.delete(transmission);
      detach?.();
      socket.end();
      socket.destroySoon();
    }
  }
}
