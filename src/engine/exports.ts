/**
 * NBD exports of snapshots: the engine's table of what the NBD server may serve, by name.
 *
 * State (in memory only: a daemon restart ends every export, as it ends every connection):
 * name → export (the snapshot, its backend, its pin, the connections attached to it). An export
 * pins its snapshot for its whole life, so the snapshot cannot be deleted under a client
 * (SnapshotBusy) and deleting other snapshots keeps the blocks of its view referenced. Stopping
 * an export drops its connections first, then unpins.
 *
 * The table serves the NBD server (ExportTable) without knowing it: the daemon attaches a server
 * and tells the table its socket path, which is also what makes `start` possible at all.
 */
import { BlocksnapError } from '../errors';
import type { SnapshotRecord } from '../catalog/records';
import { readView } from '../catalog/block-map';
import type { Catalog } from '../catalog/catalog';
import type { ExportTable, NbdExport } from '../nbd/backend';
import { NAME_MAX } from './names';
import { SnapshotBackend } from './snapshot-backend';
import type { EngineLogger } from './engine';

export interface ExportInfo {
  name: string;
  snapshotId: string;
  diskId: string;
  sizeBytes: number;
  writable: boolean;
  /** Clients in the transmission phase right now. */
  connections: number;
  startedAt: string;
  /** What QEMU and libnbd tools take: nbd+unix:///NAME?socket=PATH */
  uri: string;
}

export interface ExportsInternals {
  readonly catalog: Catalog;
  readonly storeDir: string;
  readonly blockSize: number;
  readonly log: EngineLogger;
  assertOpen(): void;
  resolveSnapshot(ref: string): SnapshotRecord;
  pin(snapshotId: string): () => void;
}

interface Entry extends NbdExport {
  readonly snapshot: SnapshotRecord;
  readonly startedAt: string;
  readonly conns: Set<{ close(reason: string): void }>;
  readonly unpin: () => void;
}

const EXPORT_NAME_RE = /^[A-Za-z0-9._@-]+$/;

/** Export names: 1-128 characters of [A-Za-z0-9._@-], not starting with '-'. */
export function validateExportName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > NAME_MAX || !EXPORT_NAME_RE.test(name) || name.startsWith('-')) {
    throw new BlocksnapError('InvalidName', `invalid export name ${JSON.stringify(name)}: use 1-${NAME_MAX} characters of A-Z a-z 0-9 . _ @ - (not starting with -)`);
  }
  return name;
}

export class Exports implements ExportTable {
  private readonly entries = new Map<string, Entry>();
  private socketPath: string | null = null;

  constructor(private readonly x: ExportsInternals) {}

  /** Set by the daemon once its NBD server listens (null: NBD is off and exports are refused). */
  setEndpoint(socketPath: string | null): void {
    this.socketPath = socketPath;
  }

  /** A read-only export of an available snapshot; the default name is the snapshot id. */
  start(snapshotRef: string, o: { name?: string } = {}): ExportInfo {
    this.x.assertOpen();
    if (this.socketPath === null) {
      throw new BlocksnapError('NbdNotEnabled', 'the daemon serves no NBD socket; start it with --nbd-socket PATH to export snapshots');
    }
    const snap = this.x.resolveSnapshot(snapshotRef);
    if (snap.status !== 'available') {
      throw new BlocksnapError('SnapshotNotAvailable', `snapshot ${snap.id} is ${snap.status}`);
    }
    const name = validateExportName(o.name ?? snap.id);
    if (this.entries.has(name)) throw new BlocksnapError('NameTaken', `an export named ${JSON.stringify(name)} is already served`);
    const backend = new SnapshotBackend(this.x.storeDir, this.x.blockSize, snap.sizeBytes, readView(this.x.catalog, snap));
    const unpin = this.x.pin(snap.id);
    const conns = new Set<{ close(reason: string): void }>();
    const entry: Entry = {
      name, description: `snapshot ${snap.name} (${snap.id}), read-only`, backend, snapshot: snap,
      startedAt: new Date().toISOString(), conns, unpin,
      attach: (c) => {
        conns.add(c);
        return () => { conns.delete(c); };
      },
    };
    this.entries.set(name, entry);
    this.x.log.info({ export: name, snapshotId: snap.id }, 'export started');
    return this.info(entry);
  }

  list(): ExportInfo[] {
    return [...this.entries.values()].map((e) => this.info(e));
  }

  get(name: string): ExportInfo {
    return this.info(this.entry(name));
  }

  /** Drops the export's clients, removes it and unpins its snapshot. */
  stop(name: string): ExportInfo {
    const e = this.entry(name);
    const before = this.info(e);
    this.entries.delete(name);
    for (const c of [...e.conns]) c.close('the export was stopped');
    e.unpin();
    this.x.log.info({ export: name, droppedConnections: before.connections }, 'export stopped');
    return { ...before, connections: 0 };
  }

  /** Stops every export (engine shutdown). */
  stopAll(): void {
    for (const name of [...this.entries.keys()]) this.stop(name);
  }

  /** Exports of a snapshot (delete refusals name them). */
  ofSnapshot(snapshotId: string): string[] {
    return [...this.entries.values()].filter((e) => e.snapshot.id === snapshotId).map((e) => e.name);
  }

  // ExportTable, for the NBD server
  lookup(name: string): NbdExport | undefined {
    return this.entries.get(name);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  private entry(name: string): Entry {
    if (typeof name !== 'string' || name.length === 0) throw new BlocksnapError('InvalidArgument', 'an export name is required');
    const e = this.entries.get(name);
    if (!e) throw new BlocksnapError('ExportNotFound', `no export named ${JSON.stringify(name)}`);
    return e;
  }

  private info(e: Entry): ExportInfo {
    return {
      name: e.name, snapshotId: e.snapshot.id, diskId: e.snapshot.diskId, sizeBytes: e.backend.size, writable: e.backend.writable,
      connections: e.conns.size, startedAt: e.startedAt,
      uri: `nbd+unix:///${encodeURIComponent(e.name)}?socket=${this.socketPath ?? ''}`,
    };
  }
}
