/**
 * Operations on copy-on-write disks (docs/design.md "Copy-on-write disks"): the instant clone,
 * point-in-time snapshots of a disk that may be served at the same moment, the instant rollback
 * and flatten. The engine calls these with the disk lock held (except `clone`, which creates the
 * disk); the layer stack itself lives in CowVolumes.
 *
 * A snapshot: (1) the instant (CowVolumes.freeze): new writes go to a fresh top layer, the ones
 * below are frozen and recorded; (2) only blocks with a granule in a frozen layer are read,
 * hashed and stored (scanBlocks), every other block keeps the base view's digest; (3) one
 * transaction commits the snapshot and makes it the disk's base with only the top layer above,
 * then the volume drops the frozen layers and their files are unlinked. A failure after (1)
 * leaves the frozen layers recorded: reads stay right and the next snapshot freezes them all.
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import { commitDelta, readView } from '../catalog/block-map';
import { DIGEST_SIZE } from '../store/format';
import { withWrittenDigests } from '../native';
import type { CowVolumes } from './cow-volumes';
import type { SharedInstant } from './shared-instant';
import { withDamageGuidance } from './damage-guidance';
import type { ExportInfo, Exports } from './exports';
import type { JobControl } from './jobs';
import type { StoreLock } from './locks';
import { hexDigests, type BlockRepair } from './block-repair';
import { newId } from './ids';
import type { PartialAt } from './partial-files';
import type { EngineLogger } from './engine';
import type { FlattenResult, ImageFormat, RollbackResult } from './types';

export interface CowDisksInternals {
  readonly catalog: Catalog;
  readonly volumes: CowVolumes;
  readonly exports: Exports;
  readonly storeLock: StoreLock;
  readonly log: EngineLogger;
  readonly threads: number | undefined;
  readonly blockSize: number;
  readonly repair: BlockRepair;
}

export class CowDisks {
  constructor(private readonly x: CowDisksInternals) {}

  /** A new COW disk over `snap`: one empty layer, nothing copied. */
  async clone(snap: SnapshotRecord, name: string): Promise<DiskRecord> {
    const id = newId('d');
    const layer = await this.x.volumes.newLayer(id, snap.sizeBytes);
    const rec: DiskRecord = {
      id, name, path: this.x.volumes.dirOf(id), format: 'cow', sizeBytes: snap.sizeBytes, createdAt: new Date().toISOString(),
      headSnapshotId: null, pendingRollback: null,
      cow: { originSnapshotId: snap.id, baseSnapshotId: snap.id, layers: [layer] },
    };
    try {
      this.x.catalog.txn(() => {
        // The snapshot or the name may have gone while the layer was created (the caller checked both before).
        if (this.x.catalog.getSnapshot(snap.id)?.status !== 'available') {
          throw new BlocksnapError('SnapshotNotFound', `snapshot ${snap.id} was deleted meanwhile`);
        }
        if (this.x.catalog.allDisks().some((d) => d.name === name)) throw new BlocksnapError('NameTaken', `a disk named ${JSON.stringify(name)} exists already`);
        this.x.catalog.putDisk(rec);
      });
    } catch (err) {
      await this.x.volumes.removeDisk(id);
      throw err;
    }
    this.x.log.info({ diskId: id, snapshotId: snap.id }, 'copy-on-write disk created');
    return rec;
  }

  /**
   * Steps (1) to (3) above; returns the committed snapshot record. `instant`: the group's, which
   * this member meets at step (1) or leaves when it fails first.
   */
  async snapshot(disk: DiskRecord, snap: SnapshotRecord, ctl: JobControl, instant?: SharedInstant): Promise<SnapshotRecord> {
    try {
      return await this.snapshotNow(disk, snap, ctl, instant);
    } catch (err) {
      instant?.leave(disk.id, err);
      throw err;
    }
  }

  private async snapshotNow(disk: DiskRecord, snap: SnapshotRecord, ctl: JobControl, instant: SharedInstant | undefined): Promise<SnapshotRecord> {
    const { open, release } = await this.x.volumes.acquire(disk.id);
    try {
      // The instant comes once the lock is held: a snapshot queued behind a gc, and cancelled
      // there, leaves no frozen layer, and its point in time is not the minutes it waited.
      const releaseStore = await this.x.storeLock.acquireShared(ctl.signal);
      let written: Buffer | undefined;
      try {
        const t0 = performance.now();
        const { frozen, at, flushMs, pauseMs } = await this.x.volumes.freeze(open, disk.id, instant ? { instant, signal: ctl.signal } : undefined);
        const tFrozen = performance.now();
        const cow = this.x.catalog.getDisk(disk.id)!.cow!;
        const base = this.x.catalog.getSnapshot(cow.baseSnapshotId)!;
        const digests = readView(this.x.catalog, base);
        const blocks = await open.volume.dirtyBlocks(frozen);
        // A block partly written since the base is read whole from the base under the writes: a
        // damaged base block fails the scan here, before the check of unwritten ones below.
        const scan = await open.volume.scanBlocks({
          blocks, layerCount: frozen, damagedDigests: this.x.repair.forScan(), ...(this.x.threads ? { threads: this.x.threads } : {}),
          // Progress in bytes, as every snapshot job reports it (the volume counts blocks).
          onProgress: (d, t) => ctl.progress(d * this.x.blockSize, t * this.x.blockSize), signal: ctl.signal,
        }).catch((err: unknown) => {
          throw withDamageGuidance(err, `the base of copy-on-write disk ${disk.name}, snapshot ${base.name} (${base.id})`,
            'snapshot this disk again');
        });
        written = scan.writtenDigests;
        const tScanned = performance.now();
        blocks.forEach((b, i) => scan.digests.copy(digests, b * DIGEST_SIZE, i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE));
        // The blocks not written since the base keep its digests unread: one listed as damaged
        // there is checked again, and fails the snapshot if it still is (block-repair.ts).
        const repaired = hexDigests(scan.repairedDigests);
        const hint = `copy-on-write disk ${disk.name} reads that block from its base wherever it was not written, so its content there is ` +
          'damaged or missing too; snapshot a disk whose image holds the block\'s good content (or import a snapshot that carries it), which writes it again, then retry';
        await this.x.repair.checkBeforeCommit(digests, repaired, hint, ctl);
        const dropped = cow.layers.slice(0, frozen);
        const done = this.x.catalog.txn(() => {
          this.x.repair.settle(digests, repaired, hint);
          const cur = this.x.catalog.getSnapshot(snap.id);
          if (cur?.status !== 'creating') throw new BlocksnapError('Internal', `snapshot ${snap.id} changed state during its job`);
          const d = this.x.catalog.getDisk(disk.id)!;
          assertOneSize(d, base, open.volume.sizeBytes, digests.length / DIGEST_SIZE, this.x.blockSize);
          const parent = d.headSnapshotId ? this.x.catalog.getSnapshot(d.headSnapshotId) : undefined;
          const sized: SnapshotRecord = {
            ...cur, parentId: parent?.id ?? null, createdAt: at.toISOString(), sizeBytes: d.sizeBytes,
            blockCount: digests.length / DIGEST_SIZE, consistency: 'point-in-time',
          };
          // The first snapshot of a clone is a root holding the full map: no data is copied, and
          // the clone no longer needs its origin's snapshot afterwards.
          const stats = commitDelta(this.x.catalog, sized, digests, parent ? readView(this.x.catalog, parent) : null);
          const available: SnapshotRecord = { ...sized, ...stats, status: 'available', completedAt: new Date().toISOString() };
          this.x.catalog.putSnapshot(available);
          this.x.catalog.putDisk({
            ...d, headSnapshotId: snap.id,
            cow: { ...d.cow!, baseSnapshotId: snap.id, layers: d.cow!.layers.slice(frozen) },
          });
          return available;
        });
        // I/O goes on during the rebase: the stack before it (base, frozen layers, top) and after
        // it (the new base, top) read the same.
        await open.volume.rebase(digests, frozen);
        this.x.volumes.dropLayers(disk.id, dropped);
        const ms = (a: number, b: number): number => Math.round(b - a);
        this.x.log.info({
          jobId: ctl.job.id, snapshotId: snap.id, diskId: disk.id, dirtyBlocks: blocks.length, bytesRead: scan.bytesRead, newBytes: done.newBytes,
          instantMs: ms(t0, tFrozen), flushMs, pauseMs, scanMs: ms(tFrozen, tScanned), commitMs: ms(tScanned, performance.now()),
        }, 'point-in-time snapshot available');
        return done;
      } catch (err) {
        // The engine frees the blocks the scan stored, as after a failed scan (failSnapshot).
        throw written ? withWrittenDigests(err, written) : err;
      } finally {
        releaseStore();
      }
    } finally {
      await release();
    }
  }

  /**
   * Refused while a writable export has clients, unless forced (then they are dropped first):
   * a client would see its disk change under it. The drop starts at once; `rollback` waits for
   * it (the promise returned), so no request of a dropped client lands after the instant.
   */
  checkRollback(disk: DiskRecord, force: boolean): Promise<void> {
    const busy = servedWithClients(this.x.exports, disk, force);
    if (busy.length === 0) return Promise.resolve();
    this.x.log.warn({ diskId: disk.id, exports: busy.map((e) => e.name) }, 'rolling back a served disk: its clients are dropped (forced)');
    return Promise.all(busy.map((e) => this.x.exports.dropClients(e.name, 'the disk was rolled back (forced)'))).then(
      () => undefined,
      (err: unknown) => this.x.log.warn({ err, diskId: disk.id }, 'dropping the clients of a rolled back disk failed'));
  }

  /**
   * The instant rollback: a fresh empty layer over the target's view; the old layers go. The new
   * head and the job's success commit together (JobControl.succeededWith). The disk takes the
   * target's size: to another size through a new volume (CowVolumes.resizeTo), whose clients
   * connected meanwhile are dropped once it serves, since they were told the old size.
   */
  async rollback(disk: DiskRecord, target: SnapshotRecord, ctl: JobControl, dropped: Promise<void>): Promise<RollbackResult> {
    await dropped;
    const { open, release } = await this.x.volumes.acquire(disk.id);
    let result: RollbackResult;
    let resized = false;
    try {
      // The gate stays closed until the stack is the target's: no write may land in between.
      const reopen = await open.gate.close();
      try {
        // Counted with the gate closed: exactly the writes the dropped layers take with them.
        const before = this.x.catalog.getDisk(disk.id)!;
        const r: RollbackResult = {
          diskId: disk.id, snapshotId: target.id, sizeBytes: target.sizeBytes, previousSizeBytes: before.sizeBytes, blocksWritten: 0, bytesWritten: 0, holesPunched: 0, blocksUnchanged: 0, newImage: false,
          discardedBytes: this.x.volumes.writtenBytes(before), discardedSinceSnapshotId: before.cow!.baseSnapshotId,
        };
        result = r;
        const commit = (layers: (current: string[]) => string[]): void => this.x.catalog.txn(() => {
          const cur = this.x.catalog.getDisk(disk.id)!;
          this.x.catalog.putDisk({
            ...cur, sizeBytes: target.sizeBytes, headSnapshotId: target.id,
            cow: { ...cur.cow!, baseSnapshotId: target.id, layers: layers(cur.cow!.layers) },
          });
          ctl.succeededWith(r);
        });
        if (target.sizeBytes === before.sizeBytes) {
          const { frozen } = await this.x.volumes.pushFresh(open, disk.id);
          const old = this.x.catalog.getDisk(disk.id)!.cow!.layers.slice(0, frozen);
          const view = readView(this.x.catalog, target);
          commit((layers) => layers.slice(frozen));
          await open.volume.rebase(view, frozen);
          this.x.volumes.dropLayers(disk.id, old);
        } else {
          const old = await this.x.volumes.resizeTo(open, disk.id, target, (layer) => commit(() => [layer]));
          this.x.volumes.dropLayers(disk.id, old);
          resized = true;
        }
      } finally {
        reopen();
      }
    } finally {
      await release();
    }
    if (resized) {
      await Promise.all(this.x.exports.ofDisk(disk.id).filter((e) => e.connections > 0).map((e) =>
        this.x.exports.dropClients(e.name, 'the disk was rolled back to a snapshot of another size').catch((err: unknown) =>
          this.x.log.warn({ err, diskId: disk.id }, 'dropping the clients of a resized disk failed'))));
    }
    this.x.log.info({ jobId: ctl.job.id, diskId: disk.id, snapshotId: target.id, sizeBytes: target.sizeBytes }, 'copy-on-write disk rolled back');
    return result;
  }

  /**
   * Writes the disk as of now (an instant, as for a snapshot) to a new image file (the engine
   * names it). The instant's layer is folded back afterwards, whatever the outcome, when nothing
   * was written meanwhile (CowVolumes.foldEmptyTop).
   */
  async flatten(disk: DiskRecord, path: string, format: ImageFormat, ctl: JobControl, at?: Pick<PartialAt, 'dirFd' | 'owner'>): Promise<FlattenResult> {
    if (ctl.signal.aborted) throw new BlocksnapError('Cancelled', 'the job was cancelled before it started');
    const { open, release } = await this.x.volumes.acquire(disk.id);
    try {
      const { frozen } = await this.x.volumes.freeze(open, disk.id);
      try {
        const r = await open.volume.flattenTo({
          layerCount: frozen, imagePath: path, ...(at !== undefined ? { dirFd: at.dirFd } : {}), ...(at?.owner !== undefined ? { owner: at.owner } : {}), format, signal: ctl.signal, onProgress: (d, t) => ctl.progress(d, t),
        });
        return { diskId: disk.id, path, format, sizeBytes: r.sizeBytes, bytesWritten: r.bytesWritten };
      } finally {
        await this.x.volumes.foldEmptyTop(open, disk.id).catch((err: unknown) =>
          this.x.log.warn({ err, diskId: disk.id }, 'the layer of a flatten\'s instant stays; the next snapshot or rollback folds it'));
      }
    } catch (err) {
      throw toBlocksnapError(err);
    } finally {
      await release();
    }
  }
}

/**
 * The exports of a copy-on-write disk that have clients a rollback would drop: refused with
 * DiskInUse unless forced. Nothing is dropped here, so a group rollback can ask every member
 * before it starts any.
 */
export function servedWithClients(exports: Exports, disk: DiskRecord, force: boolean): ExportInfo[] {
  const busy = exports.ofDisk(disk.id).filter((e) => e.connections > 0);
  if (busy.length > 0 && !force) {
    throw new BlocksnapError('DiskInUse',
      `disk ${disk.name} is served by export ${busy[0]!.name} with ${busy[0]!.connections} client(s); disconnect them, or pass --force to drop them`,
      { diskId: disk.id, export: busy[0]!.name });
  }
  return busy;
}

/**
 * A snapshot of a copy-on-write disk records the disk's size beside a view whose unwritten blocks
 * are the base's, cut at the base's size, and whose written ones were read from the volume at its
 * size: unless all three agree, the tail block's length disagrees with the recorded size and the
 * snapshot could never be restored. Refused before it is committed.
 */
function assertOneSize(disk: DiskRecord, base: SnapshotRecord, volumeBytes: number, blocks: number, blockSize: number): void {
  if (disk.sizeBytes === base.sizeBytes && volumeBytes === disk.sizeBytes && blocks === Math.ceil(disk.sizeBytes / blockSize)) return;
  throw new BlocksnapError('Internal',
    `copy-on-write disk ${disk.name} is recorded as ${disk.sizeBytes} bytes, its base snapshot ${base.id} as ${base.sizeBytes} bytes and its ` +
    `volume serves ${volumeBytes} bytes in ${blocks} blocks; a snapshot of it would not restore, so none is committed`,
    { diskId: disk.id, sizeBytes: disk.sizeBytes, baseSizeBytes: base.sizeBytes, volumeBytes });
}
