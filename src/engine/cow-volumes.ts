/**
 * The open volumes of copy-on-write disks: at most one native Volume per disk, shared by the
 * disk's writable export and the jobs that run on it (snapshot, rollback, flatten), so that all
 * of them see one layer stack and one set of in-memory dirty bits.
 *
 * State (in memory): diskId → { volume, gate, users }. A volume opens on its first lease and is
 * closed (flushed) when its last lease ends; layer files are the durable state, the catalog's
 * disk.cow lists them. Every I/O of an export passes through the disk's IoGate; a job that must
 * change the layer stack between two requests (the instant of a snapshot, a rollback) closes the
 * gate, waits for the requests in flight, changes the stack, and opens it again, so a request is
 * wholly before or wholly after the instant. Only the holder of the disk lock closes the gate,
 * so there is one closer at a time.
 */
import { readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import type { CowRecord, DiskRecord, SnapshotRecord } from '../catalog/records';
import { readView } from '../catalog/block-map';
import { countWrittenBytes, countWrittenBytesNow, createLayer, Volume, type LayerFiles } from '../native/volume';
import { newId } from './ids';
import type { EngineLogger } from './engine';
import type { SharedInstant } from './shared-instant';

export const COW_DIR = 'cow';

const roundMs = (ms: number): number => Math.round(ms * 100) / 100;

/** Admits I/O while open; `close` waits for the I/O in flight and holds new I/O until reopened. */
export class IoGate {
  private active = 0;
  private held: Promise<void> | null = null;
  private reopen: (() => void) | null = null;
  private drained: (() => void) | null = null;

  async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.held) await this.held;
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      if (this.active === 0) this.drained?.();
    }
  }

  /** Resolves once no I/O is in flight; returns the function that lets I/O through again. */
  async close(): Promise<() => void> {
    if (this.held) throw new BlocksnapError('Internal', 'the I/O gate of a volume is already closed');
    this.held = new Promise<void>((r) => { this.reopen = r; });
    if (this.active > 0) await new Promise<void>((r) => { this.drained = r; });
    this.drained = null;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const r = this.reopen;
      this.held = null;
      this.reopen = null;
      r?.();
    };
  }
}

export interface OpenVolume {
  readonly diskId: string;
  /** Replaced only by a rollback to a snapshot of another size (CowVolumes.resizeTo), gate closed. */
  volume: Volume;
  readonly gate: IoGate;
}

interface Slot { opening: Promise<OpenVolume>; users: number }

export interface CowVolumesInternals {
  readonly catalog: Catalog;
  readonly dataDir: string;
  readonly storeDir: string;
  readonly granuleDir: string;
  readonly blockSize: number;
  readonly log: EngineLogger;
}

export class CowVolumes {
  private readonly slots = new Map<string, Slot>();
  /** Volumes whose last lease ended and that are still flushing: a reopen waits for them. */
  private readonly closing = new Map<string, Promise<void>>();
  /** writtenBytes of each disk without an open volume, with the layers it was counted from. */
  private readonly written = new Map<string, { key: string; bytes: number }>();
  /** The volume of each disk that has one open or closing: it keeps the disk's written count. */
  private readonly live = new Map<string, Volume>();
  /** The first counts after start (warmWrittenCounts), off the event loop. */
  private warming: Promise<void> | null = null;
  /** Layer files being unlinked in the background (dropLayers). */
  private readonly dropping = new Set<Promise<void>>();

  constructor(private readonly x: CowVolumesInternals) {}

  dirOf(diskId: string): string {
    return join(this.x.dataDir, COW_DIR, diskId);
  }

  files(diskId: string, layerId: string): LayerFiles {
    const dir = this.dirOf(diskId);
    return { dataPath: join(dir, `${layerId}.data`), mapPath: join(dir, `${layerId}.map`) };
  }

  /** Creates a fresh empty layer of the disk; returns its id. */
  async newLayer(diskId: string, sizeBytes: number): Promise<string> {
    const id = newId('l');
    await createLayer(this.files(diskId, id), sizeBytes, id);
    return id;
  }

  /** The disk's volume, opened on first use; `release` closes it after its last user. */
  async acquire(diskId: string): Promise<{ open: OpenVolume; release: () => Promise<void> }> {
    this.written.delete(diskId);
    let slot = this.slots.get(diskId);
    if (!slot) {
      // Opening while the previous volume still flushes would read a bitmap missing its last bits.
      const previous = this.closing.get(diskId)?.catch(() => undefined) ?? Promise.resolve();
      slot = { opening: previous.then(() => this.openNow(diskId)), users: 0 };
      this.slots.set(diskId, slot);
      const s = slot;
      s.opening.catch(() => { if (this.slots.get(diskId) === s) this.slots.delete(diskId); });
    }
    slot.users++;
    const s = slot;
    let open: OpenVolume;
    try {
      open = await s.opening;
    } catch (err) {
      s.users--;
      throw err;
    }
    let released = false;
    return {
      open,
      release: async () => {
        if (released) return;
        released = true;
        if (--s.users > 0) return;
        if (this.slots.get(diskId) === s) this.slots.delete(diskId);
        const closed = open.volume.close();
        this.closing.set(diskId, closed);
        let flushed = false;
        try {
          await closed;
          flushed = true;
        } finally {
          if (this.closing.get(diskId) === closed) {
            this.closing.delete(diskId);
            if (this.live.get(diskId) === open.volume) this.live.delete(diskId);
            // Flushed, the files hold every bit the volume counted: its count is theirs, so the
            // next listing need not read the maps. A failed flush left them behind it.
            const layers = this.x.catalog.getDisk(diskId)?.cow?.layers;
            if (flushed && layers && !this.slots.has(diskId)) this.written.set(diskId, { key: layers.join(','), bytes: open.volume.writtenBytes() });
          }
        }
      },
    };
  }

  isOpen(diskId: string): boolean {
    return this.slots.has(diskId);
  }

  private async openNow(diskId: string): Promise<OpenVolume> {
    const disk = this.x.catalog.getDisk(diskId);
    if (!disk?.cow) throw new BlocksnapError('NotCowDisk', `disk ${diskId} is not a copy-on-write disk`);
    const volume = await Volume.open(this.spec(disk, disk.cow));
    this.live.set(diskId, volume);
    return { diskId, volume, gate: new IoGate() };
  }

  private spec(disk: DiskRecord, cow: CowRecord): Parameters<typeof Volume.open>[0] {
    const base = this.x.catalog.getSnapshot(cow.baseSnapshotId);
    if (!base) throw new BlocksnapError('Internal', `the base snapshot ${cow.baseSnapshotId} of disk ${disk.name} is missing from the catalog`);
    return {
      storeDir: this.x.storeDir, granuleDir: this.x.granuleDir, blockSize: this.x.blockSize, sizeBytes: disk.sizeBytes, baseDigests: readView(this.x.catalog, base),
      layers: cow.layers.map((l) => this.files(disk.id, l)), writable: true, backgroundVerify: true,
    };
  }

  /**
   * The instant: between two requests, freezes the top layer under a fresh one and records it.
   * Returns how many layers are now frozen (everything below the new top), the instant, and how
   * long I/O was held. What does not need the pause is done before it, with I/O flowing: the new
   * layer's files are made and the top is flushed, so that pushing the layer inside the pause
   * flushes only what was written since (otherwise a guest that wrote a GiB it never flushed would
   * have every request held until all of it reached the disk). With `shared`, the instant is the
   * group's (shared-instant.ts): the gate closes once every member has flushed, and the layer is
   * pushed once every member's gate is closed.
   */
  async freeze(open: OpenVolume, diskId: string, shared?: { instant: SharedInstant; signal: AbortSignal }): Promise<{ frozen: number; at: Date; flushMs: number; pauseMs: number }> {
    const layerId = await this.newLayer(diskId, this.x.catalog.getDisk(diskId)!.sizeBytes);
    const flushStart = performance.now();
    let start: number;
    let reopen: () => void;
    try {
      await open.volume.flush();
      await shared?.instant.meet(diskId, 'flushed', shared.signal);
      start = performance.now();
      reopen = await open.gate.close();
    } catch (err) {
      this.unlinkLayers(diskId, [layerId]);
      throw err;
    }
    shared?.instant.held(start);
    const flushMs = roundMs(start - flushStart);
    let pushed: { frozen: number; at: Date };
    try {
      try {
        await shared?.instant.meet(diskId, 'held', shared.signal, () => this.listLayer(diskId, layerId));
      } catch (err) {
        this.unlinkLayers(diskId, [layerId]);
        throw err;
      }
      pushed = await this.pushFresh(open, diskId, layerId, shared !== undefined);
    } finally {
      reopen();
      shared?.instant.reopen(performance.now());
    }
    const pauseMs = roundMs(performance.now() - start);
    this.x.log.debug({ diskId, flushMs, pauseMs }, 'copy-on-write instant: I/O was held');
    return { ...pushed, flushMs, pauseMs };
  }

  /**
   * Puts a fresh empty layer on top; the caller has closed the gate. The catalog lists the layer
   * before the volume writes to it: if the push then fails, an empty top layer changes nothing
   * a reader sees, whereas a layer taking writes that the catalog does not list would be
   * removed, with its writes, at the next start. `made` is a layer newLayer already created;
   * `listed`, that the caller's transaction listed it already (listLayer).
   */
  async pushFresh(open: OpenVolume, diskId: string, made?: string, listed = false): Promise<{ frozen: number; at: Date }> {
    const layerId = made ?? await this.newLayer(diskId, this.x.catalog.getDisk(diskId)!.sizeBytes);
    if (!listed) {
      try {
        this.x.catalog.txn(() => this.listLayer(diskId, layerId));
      } catch (err) {
        this.unlinkLayers(diskId, [layerId]);
        throw err;
      }
    }
    try {
      await open.volume.pushLayer(this.files(diskId, layerId));
    } catch (err) {
      try {
        this.x.catalog.txn(() => {
          const d = this.x.catalog.getDisk(diskId)!;
          this.x.catalog.putDisk({ ...d, cow: { ...d.cow!, layers: d.cow!.layers.filter((id) => id !== layerId) } });
        });
        this.unlinkLayers(diskId, [layerId]);
      } catch (undo) {
        this.x.log.warn({ err: undo, diskId, layerId }, 'an empty layer stays listed after a failed push; the next snapshot folds it in');
      }
      throw err;
    }
    return { frozen: open.volume.layerCount() - 1, at: new Date() };
  }

  /** Lists `layerId` on top of the disk's layers, in the caller's catalog transaction. */
  listLayer(diskId: string, layerId: string): void {
    const d = this.x.catalog.getDisk(diskId)!;
    this.x.catalog.putDisk({ ...d, cow: { ...d.cow!, layers: [...d.cow!.layers, layerId] } });
  }

  /**
   * A rollback to a snapshot of another size: a volume's size is fixed when it opens, so the disk
   * gets a new volume over `base`'s view with one fresh layer of `base`'s size, and the old one
   * closes. The caller has closed the gate; `commit` records the new layer in the catalog (in the
   * transaction that makes `base` the disk's), and until it has, a failure leaves the old volume
   * serving as it was. Returns the layers the old volume had, for the caller to drop.
   */
  async resizeTo(open: OpenVolume, diskId: string, base: SnapshotRecord, commit: (layerId: string) => void): Promise<string[]> {
    const disk = this.x.catalog.getDisk(diskId)!;
    const layerId = await this.newLayer(diskId, base.sizeBytes);
    let next: Volume;
    try {
      next = await Volume.open(this.spec({ ...disk, sizeBytes: base.sizeBytes }, { ...disk.cow!, baseSnapshotId: base.id, layers: [layerId] }));
    } catch (err) {
      this.unlinkLayers(diskId, [layerId]);
      throw err;
    }
    try {
      commit(layerId);
    } catch (err) {
      await next.close().catch(() => undefined);
      this.unlinkLayers(diskId, [layerId]);
      throw err;
    }
    const old = open.volume;
    open.volume = next;
    this.live.set(diskId, next);
    // What the old volume holds is discarded by the rollback: a failed close loses nothing.
    await old.close().catch((err: unknown) => this.x.log.warn({ err, diskId }, 'closing the volume a rollback replaced failed'));
    return disk.cow!.layers;
  }

  /**
   * Undoes the freeze of a job that needed the instant only while it ran (a flatten): when the
   * top layer took no write since, it goes and the layer below takes writes again, so such jobs
   * do not pile up layers. A top that took writes stays; the next snapshot or rollback folds it.
   * Returns whether the top went. The volume drops the layer before the catalog does: a catalog
   * that no longer listed a layer still taking writes would lose them at the next start.
   */
  async foldEmptyTop(open: OpenVolume, diskId: string): Promise<boolean> {
    const reopen = await open.gate.close();
    try {
      const top = this.x.catalog.getDisk(diskId)!.cow!.layers.at(-1)!;
      if (!(await open.volume.popEmptyTop())) return false;
      try {
        this.x.catalog.txn(() => {
          const d = this.x.catalog.getDisk(diskId)!;
          this.x.catalog.putDisk({ ...d, cow: { ...d.cow!, layers: d.cow!.layers.filter((id) => id !== top) } });
        });
      } catch (err) {
        // The catalog still lists the empty top: it takes the writes again, as it did.
        await open.volume.pushLayer(this.files(diskId, top));
        throw err;
      }
      this.dropLayers(diskId, [top]);
      return true;
    } finally {
      reopen();
    }
  }

  /**
   * unlinkLayers off the caller's path, for layers the catalog no longer lists: freeing the
   * extents of a layer that took 230 MB of writes takes ~70 ms, which a snapshot or rollback need
   * not wait for. A crash before the unlink leaves files the next start removes as unlisted.
   */
  dropLayers(diskId: string, layerIds: string[]): void {
    if (layerIds.length === 0) return;
    const paths = layerIds.flatMap((id) => { const f = this.files(diskId, id); return [f.dataPath, f.mapPath]; });
    const p: Promise<void> = Promise.all(paths.map((path) => unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') this.x.log.warn({ err, path }, 'could not remove a layer file; the next start removes it');
    }))).then(() => { this.dropping.delete(p); });
    this.dropping.add(p);
  }

  /** Resolves once every layer file dropLayers was given is gone. */
  async idle(): Promise<void> {
    while (this.dropping.size > 0) await Promise.all([...this.dropping]);
    await this.warming;
  }

  unlinkLayers(diskId: string, layerIds: string[]): void {
    for (const id of layerIds) {
      const f = this.files(diskId, id);
      for (const p of [f.dataPath, f.mapPath]) {
        try {
          unlinkSync(p);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.x.log.warn({ err, path: p }, 'could not remove a layer file; the next start removes it');
        }
      }
    }
  }

  /** Bytes the disk's layer data files occupy on disk (sparse: only what was written). */
  overlayBytes(diskId: string, layerIds: string[]): number {
    let total = 0;
    for (const id of layerIds) {
      try {
        total += statSync(this.files(diskId, id).dataPath).blocks * 512;
      } catch {
        // a layer being removed right now
      }
    }
    return total;
  }

  /**
   * Bytes of the disk written since its base (its last snapshot or rollback, or the clone), by
   * the layers' map bits, TRIMs and zeroes included (native/volume.ts, Volume.writtenBytes); null
   * when a map cannot be read (the disk's volume would not open either). Every disk list and show
   * asks, and a 1 TiB disk's map is 32 MiB of bits: an open volume keeps the count as it sets bits,
   * and a closed one's is kept from its close, or counted once from the files (only this daemon
   * writes the maps, and only through an open volume, so it cannot change meanwhile).
   */
  writtenBytes(disk: DiskRecord): number | null {
    try {
      const live = this.live.get(disk.id);
      if (live) return live.writtenBytes();
      const key = disk.cow!.layers.join(',');
      const known = this.written.get(disk.id);
      if (known?.key === key) return known.bytes;
      const bytes = countWrittenBytesNow(this.mapPaths(disk), disk.sizeBytes);
      if (!this.slots.has(disk.id)) this.written.set(disk.id, { key, bytes });
      return bytes;
    } catch (err) {
      this.x.log.warn({ err, diskId: disk.id }, 'a layer map of a copy-on-write disk cannot be read');
      return null;
    }
  }

  /**
   * At start: counts the written bytes of every copy-on-write disk on the libuv pool, so that the
   * first listings find them counted. A disk whose volume opens meanwhile is left to it.
   */
  warmWrittenCounts(): void {
    const disks = this.x.catalog.allDisks().filter((d) => d.cow);
    if (disks.length === 0) return;
    this.warming = (async () => {
      for (const d of disks) {
        const key = d.cow!.layers.join(',');
        try {
          const bytes = await countWrittenBytes(this.mapPaths(d), d.sizeBytes);
          const now = this.x.catalog.getDisk(d.id)?.cow?.layers.join(',');
          if (now === key && !this.slots.has(d.id) && !this.closing.has(d.id) && !this.written.has(d.id)) this.written.set(d.id, { key, bytes });
        } catch {
          // Counted (and the failure told) when a listing asks.
        }
      }
    })().finally(() => { this.warming = null; });
  }

  private mapPaths(disk: DiskRecord): string[] {
    return disk.cow!.layers.map((l) => this.files(disk.id, l).mapPath);
  }

  /** Deletes the disk's layer files, once a volume of it that is still flushing has closed. */
  async removeDisk(diskId: string): Promise<void> {
    await this.closing.get(diskId)?.catch(() => undefined);
    rmSync(this.dirOf(diskId), { recursive: true, force: true });
    this.written.delete(diskId);
  }

  /**
   * At start, before anything opens a volume: removes layer files and disk directories the
   * catalog does not list (a snapshot or rollback that stopped between creating a layer and
   * recording it, or between committing and unlinking the old ones). Returns how many went.
   */
  removeUnlisted(): number {
    const root = join(this.x.dataDir, COW_DIR);
    let entries: string[];
    try {
      entries = readdirSync(root);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const diskId of entries) {
      const disk = this.x.catalog.getDisk(diskId);
      if (!disk?.cow) {
        rmSync(join(root, diskId), { recursive: true, force: true });
        removed++;
        continue;
      }
      const keep = new Set(disk.cow.layers.flatMap((l) => [`${l}.data`, `${l}.map`]));
      for (const f of readdirSync(join(root, diskId))) {
        if (keep.has(f)) continue;
        rmSync(join(root, diskId, f), { force: true, recursive: true });
        removed++;
      }
    }
    return removed;
  }

  /** Closes (flushes) every open volume: the daemon's shutdown, after exports and jobs stopped. */
  async closeAll(): Promise<void> {
    await this.idle();
    const slots = [...this.slots.values()];
    this.slots.clear();
    await Promise.all([...this.closing.values()].map((p) => p.catch(() => undefined)));
    for (const s of slots) {
      try {
        const open = await s.opening;
        await open.gate.close(); // requests of dropped clients still in flight finish first; none start
        await open.volume.close();
      } catch (err) {
        this.x.log.error({ err }, 'closing a copy-on-write volume failed');
      }
    }
  }
}
