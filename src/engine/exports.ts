/**
 * NBD exports: the engine's table of what the NBD server may serve, by name.
 *
 * State (in memory only: a daemon restart ends every export, as it ends every connection):
 * name → export (a snapshot or a copy-on-write disk, its backend, what it holds, the connections
 * attached to it). A snapshot export pins its snapshot for its whole life, so the snapshot cannot
 * be deleted under a client (SnapshotBusy) and deleting other snapshots keeps the blocks of its
 * view referenced. A writable export of a COW disk holds a lease on the disk's shared volume (at
 * most one such export per disk). Stopping an export drops its connections first, then lets go
 * of what it holds, and answers once that is done: a writable export's volume is then closed,
 * so every write its clients got an answer for is durable (a crash right after loses none).
 *
 * The table serves the NBD server (ExportTable) without knowing it: the daemon attaches a server
 * and tells the table its socket path, which is also what makes `start` possible at all.
 */
import { BlocksnapError } from '../errors';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import { readView } from '../catalog/block-map';
import type { Catalog } from '../catalog/catalog';
import type { ExportConnection, ExportTable, NbdExport } from '../nbd/backend';
import { validateExportName } from './names';
import type { EngineLogger } from './engine';
import type { CowVolumes } from './cow-volumes';
import { SnapshotVolumeBackend, VolumeBackend } from './volume-backend';
import { Volume } from '../native/volume';

export interface ExportInfo {
  name: string;
  /** The exported snapshot; null for a writable export of a copy-on-write disk. */
  snapshotId: string | null;
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
  readonly granuleDir: string;
  readonly blockSize: number;
  readonly log: EngineLogger;
  assertOpen(): void;
  resolveSnapshot(ref: string): SnapshotRecord;
  resolveDisk(ref: string): DiskRecord;
  pin(snapshotId: string): () => void;
  readonly volumes: CowVolumes;
}

interface Entry extends NbdExport {
  readonly snapshotId: string | null;
  readonly diskId: string;
  readonly startedAt: string;
  readonly conns: Set<ExportConnection>;
  /** Lets go of the pin or the volume lease; resolves once the volume it held is closed. */
  readonly unpin: () => Promise<void>;
}

export class Exports implements ExportTable {
  private readonly entries = new Map<string, Entry>();
  private socketPath: string | null = null;

  constructor(private readonly x: ExportsInternals) {}

  /** Set by the daemon once its NBD server listens (null: NBD is off and exports are refused). */
  setEndpoint(socketPath: string | null): void {
    this.socketPath = socketPath;
  }

  /** The NBD socket exports are served on; null when the daemon serves none. */
  endpoint(): string | null {
    return this.socketPath;
  }

  /** A read-only export of an available snapshot; the default name is the snapshot id. */
  start(snapshotRef: string, o: { name?: string } = {}): ExportInfo {
    this.assertCanStart();
    const snap = this.snapshotToServe(snapshotRef);
    if (snap.status !== 'available') {
      throw new BlocksnapError('SnapshotNotAvailable', `snapshot ${snap.id} is ${snap.status}`);
    }
    const name = validateExportName(o.name ?? snap.id);
    if (this.entries.has(name)) throw new BlocksnapError('NameTaken', `an export named ${JSON.stringify(name)} is already served`);
    const view = readView(this.x.catalog, snap);
    const volume = Volume.openNow({
      storeDir: this.x.storeDir, granuleDir: this.x.granuleDir, blockSize: this.x.blockSize, sizeBytes: snap.sizeBytes, baseDigests: view,
      layers: [], writable: false,
    });
    const backend = new SnapshotVolumeBackend(volume, this.x.blockSize, snap.sizeBytes, view);
    const unpin = this.x.pin(snap.id);
    const release = async (): Promise<void> => {
      unpin();
      await backend.close().catch((err: unknown) => this.x.log.error({ err, snapshotId: snap.id }, 'closing the volume of a stopped export failed'));
    };
    const entry = this.add(name, `snapshot ${snap.name} (${snap.id}), read-only`, backend, snap.id, snap.diskId, release);
    this.x.log.info({ export: name, snapshotId: snap.id }, 'export started');
    return this.info(entry);
  }

  /** A writable export of a copy-on-write disk; the default name is the disk's name. */
  async startDisk(diskRef: string, o: { name?: string } = {}): Promise<ExportInfo> {
    this.assertCanStart();
    const disk = this.diskToServe(diskRef);
    if (!disk.cow) {
      throw new BlocksnapError('NotCowDisk', `disk ${disk.name} is an image file; only copy-on-write disks (clone --cow) can be exported writable`);
    }
    // The disk before the name: a second start of a served disk takes the name the first one has
    // (the disk's), and what refuses it is the disk's one writable export.
    const other = this.ofDisk(disk.id);
    if (other.length > 0) throw new BlocksnapError('DiskExported', `disk ${disk.name} is already exported as ${other[0]!.name}`, { export: other[0]!.name });
    const name = validateExportName(o.name ?? disk.name);
    if (this.entries.has(name)) throw new BlocksnapError('NameTaken', `an export named ${JSON.stringify(name)} is already served`);
    const { open, release } = await this.x.volumes.acquire(disk.id);
    // Checked again: the open yielded, and another start of the same name or disk, or a remove, may have won.
    if (this.entries.has(name) || this.ofDisk(disk.id).length > 0 || !this.x.catalog.getDisk(disk.id)) {
      await release();
      if (!this.x.catalog.getDisk(disk.id)) throw new BlocksnapError('DiskNotFound', `disk ${disk.name} was removed meanwhile`);
      const won = this.ofDisk(disk.id)[0];
      if (won) throw new BlocksnapError('DiskExported', `disk ${disk.name} was exported meanwhile, as ${won.name}`, { export: won.name });
      throw new BlocksnapError('NameTaken', `an export named ${JSON.stringify(name)} was started meanwhile`);
    }
    // A job (snapshot, flatten) may hold the volume too, and then release() does not close it:
    // the flush is ours, so the clients' writes are durable when stop answers either way.
    const unpin = async (): Promise<void> => {
      await open.volume.flush().catch((err: unknown) => this.x.log.error({ err, diskId: disk.id }, 'flushing the volume of a stopped export failed'));
      await release().catch((err: unknown) => this.x.log.error({ err, diskId: disk.id }, 'closing the volume of a stopped export failed'));
    };
    const entry = this.add(name, `copy-on-write disk ${disk.name} (${disk.id}), writable`, new VolumeBackend(open), null, disk.id, unpin);
    this.x.log.info({ export: name, diskId: disk.id }, 'writable export started');
    return this.info(entry);
  }

  /**
   * A ref that names no disk but a snapshot (`export start SNAP --writable`): a snapshot is served
   * read-only, or writable through a copy-on-write disk made from it; the error says so.
   */
  private diskToServe(ref: string): DiskRecord {
    try {
      return this.x.resolveDisk(ref);
    } catch (err) {
      if (!(err instanceof BlocksnapError) || err.code !== 'DiskNotFound') throw err;
      let snap: SnapshotRecord;
      try {
        snap = this.x.resolveSnapshot(ref);
      } catch {
        throw err;
      }
      const of = this.x.catalog.getDisk(snap.diskId)?.name ?? snap.diskId;
      throw new BlocksnapError('DiskNotFound',
        `no disk ${JSON.stringify(ref)}; ${ref} is a snapshot of disk ${of}: without --writable it is served read-only, and to serve it ` +
        `writable, make a copy-on-write disk of it first (blocksnap clone ${ref} --cow --name NAME) and export that disk with --writable`,
        { snapshotId: snap.id });
    }
  }

  /** A ref that names no snapshot but a disk was most likely meant as one: the error says how to serve it. */
  private snapshotToServe(ref: string): SnapshotRecord {
    try {
      return this.x.resolveSnapshot(ref);
    } catch (err) {
      if (!(err instanceof BlocksnapError) || err.code !== 'SnapshotNotFound') throw err;
      let disk: DiskRecord;
      try {
        disk = this.x.resolveDisk(ref);
      } catch {
        throw err;
      }
      throw new BlocksnapError('SnapshotNotFound', disk.cow
        ? `no snapshot ${JSON.stringify(ref)}; copy-on-write disk ${disk.name} is served read-write, with --writable`
        : `no snapshot ${JSON.stringify(ref)}; disk ${disk.name} is an image file: an export serves one of its snapshots, or a copy-on-write disk (clone --cow) with --writable`,
      { diskId: disk.id });
    }
  }

  private assertCanStart(): void {
    this.x.assertOpen();
    if (this.socketPath === null) {
      throw new BlocksnapError('NbdNotEnabled', 'the daemon serves no NBD socket; start it with --nbd-socket PATH to export snapshots');
    }
  }

  private add(name: string, description: string, backend: Entry['backend'], snapshotId: string | null, diskId: string, unpin: () => Promise<void>): Entry {
    const conns = new Set<ExportConnection>();
    const entry: Entry = {
      name, description, backend, snapshotId, diskId, startedAt: new Date().toISOString(), conns, unpin,
      attach: (c) => {
        conns.add(c);
        return () => { conns.delete(c); };
      },
    };
    this.entries.set(name, entry);
    return entry;
  }

  list(): ExportInfo[] {
    return [...this.entries.values()].map((e) => this.info(e));
  }

  get(name: string): ExportInfo {
    return this.info(this.entry(name));
  }

  /**
   * Removes the export at once (no new client can attach) and drops its clients; once they have
   * answered the requests they were running (bounded by the server's shutdown grace), closes its
   * volume and unpins its snapshot. Closing the volume first would fail those reads. Resolves
   * once the volume is closed, a writable one flushed: an answer before would leave the clients'
   * unflushed writes to a crash in between.
   */
  async stop(name: string): Promise<ExportInfo> {
    const e = this.entry(name);
    const before = this.info(e);
    this.entries.delete(name);
    try {
      await Promise.all([...e.conns].map((c) => c.close('the export was stopped')));
    } finally {
      await e.unpin();
    }
    this.x.log.info({ export: name, droppedConnections: before.connections }, 'export stopped');
    return { ...before, connections: 0 };
  }

  /** Stops every export (engine shutdown). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((name) => this.stop(name)));
  }

  /** Exports of a snapshot (delete refusals name them). */
  ofSnapshot(snapshotId: string): string[] {
    return [...this.entries.values()].filter((e) => e.snapshotId === snapshotId).map((e) => e.name);
  }

  /** Writable exports of a copy-on-write disk (at most one). */
  ofDisk(diskId: string): ExportInfo[] {
    return [...this.entries.values()].filter((e) => e.snapshotId === null && e.diskId === diskId).map((e) => this.info(e));
  }

  /**
   * Drops the export's clients and keeps serving it (a forced rollback). Resolves once they have
   * answered the requests they were running, so none of their writes lands after.
   */
  async dropClients(name: string, reason: string): Promise<void> {
    await Promise.all([...this.entry(name).conns].map((c) => c.close(reason)));
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
      name: e.name, snapshotId: e.snapshotId, diskId: e.diskId, sizeBytes: e.backend.size, writable: e.backend.writable,
      connections: e.conns.size, startedAt: e.startedAt,
      uri: `nbd+unix:///${encodeURIComponent(e.name)}?socket=${this.socketPath ?? ''}`,
    };
  }
}
