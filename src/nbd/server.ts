/**
 * The NBD server: a Unix socket (mode 0660 by default, like the control socket) on which each
 * connection negotiates one export by name and then reads and writes it. Exports come from an
 * ExportTable (the engine's); the server holds only its connections.
 *
 * A connection's life: handshake → transmission → closed. Whatever one client sends, the worst
 * outcome is that its own connection closes (ProtocolViolation, a socket error, an unexpected
 * exception): nothing is shared between connections but the export's backend.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { claimSocketPath, setSocketAccess } from '../daemon/socket-file';
import { BlocksnapError } from '../errors';
import type { ExportTable } from './backend';
import { ByteReader, ConnectionClosed } from './byte-reader';
import { Handshake, ProtocolViolation } from './handshake';
import { ByteBudget } from './byte-budget';
import { ReplyBuffers } from './reply-buffers';
import { Transmission } from './transmission';

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
}

/** 64 MiB: two maximum-size requests, or many small ones, across every client at once. */
export const NBD_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

export class NbdServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Request data in flight over all connections: the daemon's NBD memory stays near this. */
  private readonly budget = new ByteBudget(NBD_BYTES_IN_FLIGHT);
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
    await setSocketAccess(path, this.o.socketMode, this.o.socketGid);
  }

  /** Stops accepting and drops every connection (clients see the socket close). */
  async close(): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined); // reported through the reader as a closed connection
    void this.serve(id, socket);
  }

  private async serve(id: number, socket: Socket): Promise<void> {
    const reader = new ByteReader(socket);
    let detach: (() => void) | null = null;
    try {
      const n = await new Handshake(socket, reader, this.exports, () => this.stopping).run();
      if (n === null) return;
      detach = n.export.attach({ close: (reason) => {
        this.log.info({ connection: id, export: n.export.name, reason }, 'NBD connection dropped');
        socket.destroy();
      } });
      this.log.debug({ connection: id, export: n.export.name, structured: n.structured }, 'NBD client attached');
      await new Transmission(socket, reader, n, this.log, this.budget, this.buffers).run();
    } catch (err) {
      if (err instanceof ProtocolViolation) this.log.warn({ connection: id, reason: err.message }, 'NBD protocol violation: closing the connection');
      else if (!(err instanceof ConnectionClosed)) this.log.warn({ connection: id, err }, 'NBD connection failed');
    } finally {
      detach?.();
      socket.end();
      socket.destroySoon();
    }
  }
}
