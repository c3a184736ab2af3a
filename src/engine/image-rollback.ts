/**
 * The rollback of a raw or qcow2 disk's image to a snapshot, under its journal (docs/design.md,
 * "Rollback" and invariant 4). The engine checks the request and holds the disk lock; this runs
 * the job: journal, native apply or new qcow2 image, and the commit that ends the journal with
 * the job's success, or, when it stops, the journal settled and an error saying what the image
 * holds. Copy-on-write disks roll back in cow-disks.ts.
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import { formatBytes } from '../size-text';
import type { Catalog } from '../catalog/catalog';
import type { DiskRecord, PendingRollbackRecord, SnapshotRecord } from '../catalog/records';
import { readView } from '../catalog/block-map';
import { SNAPSHOT_REWRITES, VERIFY_NAMES_SHARERS, isDamageCode } from './damage-guidance';
import { imageFormatOf, journaledFile, rollbackTempName, stillSameFile } from './image-access';
import { asRegistrantOf, checkRegistrantImage, inspectDiskImage } from './registrant-access';
import type { UserAccess } from './user-access';
import { removeRollbackLeftovers, rollbackImage } from './image-writes';
import type { JobControl } from './jobs';
import type { EngineLogger } from './engine';
import type { AbandonedImage, RollbackResult } from './types';

export interface ImageRollbackInternals {
  readonly catalog: Catalog;
  readonly storeDir: string;
  readonly blockSize: number;
  readonly threads: number | undefined;
  readonly log: EngineLogger;
  readonly imageRoots: string[];
}

export class ImageRollbacks {
  constructor(private readonly x: ImageRollbackInternals) {}

  /**
   * Journal first, then touch the image: if anything stops the apply, the disk keeps reporting
   * the rollback, snapshots of it are refused, and rerunning it finishes the job (the apply
   * compares every block with the target, so a rerun writes only what is still different).
   * A qcow2 rollback touches the disk only with the rename of its new image over it, so its
   * journal also names the disk file as it was; one that stops while the disk's path still names
   * that file clears the journal again (clearUntouchedRollback). A raw rollback checks every
   * stored block it needs before it writes any, and commits `writesBegun` to its journal before
   * its first write: one that fails before (`imageUnchanged`) clears a journal it wrote itself,
   * and one cut off there (a crash) leaves a journal that the next start clears.
   */
  async run(disk: DiskRecord, snap: SnapshotRecord, ctl: JobControl, path: string): Promise<RollbackResult> {
    return await asRegistrantOf(disk, (user) => this.runAs(disk, snap, ctl, path, user));
  }

  /** run, `user` holding the files the rights of the disk's registrant were decided on (registrant-access.ts). */
  private async runAs(disk: DiskRecord, snap: SnapshotRecord, ctl: JobControl, path: string, user: UserAccess | undefined): Promise<RollbackResult> {
    const format = imageFormatOf(disk);
    // Decided again here, held until the apply or the new image's rename has opened the file.
    if (user !== undefined) checkRegistrantImage(disk, path, user);
    const imageId = user?.identity(path);
    // A qcow2 rollback's new image keeps the backing name and format: a format the header does
    // not record is probed, and only from a backing file checked against the roots.
    // Its content is compared with the backing chain checked here, the one a snapshot would read.
    const { qcow2, backingChain, sizeBytes: previousSizeBytes } = inspectDiskImage(disk, path, this.x.imageRoots, user);
    const view = readView(this.x.catalog, snap);
    // What an earlier attempt's crash left (when the start could not remove it) goes before the
    // journal takes this attempt's name: a crash in between must not leave a disk-sized file that
    // no record names. A removal that fails fails this attempt with the earlier name journaled.
    const earlier = this.x.catalog.getDisk(disk.id)?.pendingRollback?.tempName;
    if (earlier !== undefined) await removeRollbackLeftovers(path, this.x.imageRoots, earlier);
    let previous: PendingRollbackRecord | null = null;
    const journal = this.x.catalog.txn(() => {
      const d = this.x.catalog.getDisk(disk.id)!;
      previous = d.pendingRollback ?? null;
      const j: PendingRollbackRecord = { snapshotId: snap.id, startedAt: new Date().toISOString(), jobId: ctl.job.id };
      // A rerun keeps the file from before the first attempt: one that was renamed over must not
      // count as "as it was". A journal without one (raw, or written by an older version) stays so.
      const before = d.pendingRollback ? d.pendingRollback.imageBefore : format === 'qcow2' ? journaledFile(path) ?? undefined : undefined;
      if (before !== undefined) j.imageBefore = before;
      if (format === 'qcow2') j.tempName = rollbackTempName(path);
      // Nothing written yet, unless an earlier attempt may have written (a journal without the
      // field, from an older version, may have).
      if (format === 'raw') j.writesBegun = d.pendingRollback ? d.pendingRollback.writesBegun !== false : false;
      this.x.catalog.putDisk({ ...d, pendingRollback: j });
      return j;
    });
    // A raw rollback writes the file the path names as the apply opens it. Replaced meanwhile
    // (`mv other img.raw`), the writes go to a file no name leads to any more, and the one the VM
    // opens was never rolled back: the path must still name the file taken here once the apply is
    // done. Taken before the apply opens it, so a replacement in between fails a rollback that did
    // write the file now at the path; a rerun then finds it all equal.
    const written = format === 'raw' ? journaledFile(path) : undefined;
    let r: Awaited<ReturnType<typeof rollbackImage>>;
    try {
      r = await rollbackImage(path, format, {
        storeDir: this.x.storeDir, blockSize: this.x.blockSize, sizeBytes: snap.sizeBytes, digests: view,
        ...(this.x.threads ? { threads: this.x.threads } : {}), onProgress: (d, t, phase) => ctl.progress(d, t, phase), signal: ctl.signal,
        ...(journal.writesBegun === false ? { beforeWrite: () => this.markWritesBegun(disk, journal.jobId) } : {}),
        ...(imageId ? { imageId } : {}),
      }, { qcow2, backingChain }, journal.tempName);
    } catch (err) {
      throw this.rollbackStopped(disk, snap, journal, toBlocksnapError(err), previous);
    }
    if (written !== undefined && (written === null || !stillSameFile(path, written))) throw this.rawImageReplaced(disk, snap, journal.jobId, path);
    // The size written, not the snapshot's: a qcow2 image's is rounded up to 512 bytes, and a
    // record of the snapshot's would tell the next rollback of a cut that did not happen.
    const result: RollbackResult = { diskId: disk.id, snapshotId: snap.id, previousSizeBytes: Number(previousSizeBytes), ...r };
    // The job's success commits with the journal's end: a crash after it must not leave the job
    // `interrupted`, which would invite a rerun over what the VM wrote since.
    this.x.catalog.txn(() => {
      const d = this.x.catalog.getDisk(disk.id)!;
      this.x.catalog.putDisk({ ...d, pendingRollback: null, headSnapshotId: snap.id, sizeBytes: r.sizeBytes });
      ctl.succeededWith(result);
    });
    this.x.log.info({ jobId: ctl.job.id, diskId: disk.id, snapshotId: snap.id, blocksWritten: r.blocksWritten, holesPunched: r.holesPunched, blocksZeroed: r.blocksZeroed }, 'rollback finished');
    return result;
  }

  /**
   * Records in the raw disk's journal that its rollback (job `jobId`) is about to write, durably:
   * the apply waits for this before its first write, and a throw stops it with the image as it
   * was. From here on the journal stays until a rollback completes or is abandoned.
   */
  private markWritesBegun(disk: DiskRecord, jobId: string): void {
    this.x.catalog.txn(() => {
      const d = this.x.catalog.getDisk(disk.id);
      const p = d?.pendingRollback;
      if (!d || !p || p.jobId !== jobId) {
        throw new BlocksnapError('Internal', `the journal of the rollback of disk ${disk.name} (job ${jobId}) is gone before its first write`, { diskId: disk.id });
      }
      this.x.catalog.putDisk({ ...d, pendingRollback: { ...p, writesBegun: true } });
    });
  }

  /**
   * The error a raw rollback ends with when the disk's path no longer names the file it wrote
   * (ImageReplaced). The journal stays: the file at the path is not the snapshot, so the disk
   * refuses snapshots until a rerun rolls that file back or the rollback is abandoned, and the
   * head stays where it was.
   */
  private rawImageReplaced(disk: DiskRecord, snap: SnapshotRecord, jobId: string, path: string): BlocksnapError {
    this.x.log.warn({ diskId: disk.id, snapshotId: snap.id, jobId, path }, 'raw rollback wrote a file that its path no longer names; the rollback journal is kept');
    return new BlocksnapError('ImageReplaced',
      `${path} was replaced (moved, or another file renamed over it) while the rollback of disk ${disk.name} to ${snap.name} wrote it: ` +
      'its writes went to the file the path named before, and the file the path names now was not rolled back. The disk refuses snapshots ' +
      `until a rollback completes: rerun it to roll back the file now at ${path}, or \`blocksnap rollback ${disk.name} --abandon\` to keep that file as it is`,
      { path, diskId: disk.id, snapshotId: snap.id });
  }

  /**
   * The error a rollback that did not finish ends with, once its journal is settled: cleared
   * when the disk file is still the one journaled (qcow2) or when this attempt journaled it and
   * wrote nothing (raw), and the message says what the image holds and the way out where the
   * journal stays.
   */
  private rollbackStopped(disk: DiskRecord, snap: SnapshotRecord, journal: PendingRollbackRecord, e: BlocksnapError,
    previous: PendingRollbackRecord | null): BlocksnapError {
    const why = e.code === 'Cancelled' ? 'cancelled' : `failed (${e.code})`;
    if (disk.format === 'qcow2' && this.clearUntouchedRollback(disk, journal.jobId, why)) {
      return new BlocksnapError(e.code, `${e.message}; disk ${disk.name} is as it was (the rollback's new image never replaced it) and takes snapshots as before`, e.details);
    }
    if (disk.format === 'qcow2' && e.code === 'ImageReplaced') {
      // The path no longer names the file journaled, so the journal could not be cleared: the bare
      // error did not say that the disk now refuses snapshots, nor how to end that.
      return new BlocksnapError(e.code, `${e.message}. The rollback of disk ${disk.name} to ${snap.name} did not replace the file now at ` +
        `its path, and the disk refuses snapshots until a rollback completes: rerun it to roll back that file, or ` +
        `\`blocksnap rollback ${disk.name} --abandon\` to keep it as it is`, { ...e.details, diskId: disk.id, snapshotId: snap.id });
    }
    const damaged = isDamageCode(e.code);
    if (disk.format === 'raw' && e.details?.imageUnchanged === true) {
      const { imageUnchanged: _, ...details } = e.details;
      const check = damaged
        ? ` ${VERIFY_NAMES_SHARERS}; repair the block and rerun (${SNAPSHOT_REWRITES}), or roll back to a snapshot that does not share it.`
        : '';
      const restored = this.restoreRawJournal(disk, journal.jobId, previous, why);
      // Resizing is the first change a rollback to another size makes, and a filesystem may
      // refuse it (a FUSE file without truncate): that is no partial rollback.
      const stopped = e.details?.syscall === 'ftruncate'
        ? `could not resize its image to the snapshot's ${formatBytes(snap.sizeBytes)} and wrote nothing`
        : 'stopped before it wrote anything';
      if (previous === null) {
        const kept = restored
          ? 'takes snapshots as before'
          : `its rollback journal could not be cleared (see the daemon's log): \`blocksnap rollback ${disk.name} --abandon\` clears it`;
        return new BlocksnapError(e.code, `${e.message}. The rollback of disk ${disk.name} to ${snap.name} ${stopped}: ` +
          `the disk is as it was and ${kept}.${check}`, { ...details, diskId: disk.id, snapshotId: snap.id });
      }
      const earlier = this.x.catalog.getSnapshot((previous as PendingRollbackRecord).snapshotId)?.name ?? (previous as PendingRollbackRecord).snapshotId;
      return new BlocksnapError(e.code, `${e.message}. This rollback of disk ${disk.name} to ${snap.name} ${stopped}, but an earlier ` +
        `rollback to ${earlier} had left the image partly rolled back, and the disk refuses snapshots until a rollback completes or is abandoned ` +
        `(\`blocksnap rollback ${disk.name} --abandon\` keeps the image as it is now).${check}`,
        { ...details, diskId: disk.id, snapshotId: snap.id, partlyRolledBack: true });
    }
    if (disk.format === 'raw' && damaged) {
      return new BlocksnapError(e.code,
        `${e.message}. The rollback of disk ${disk.name} to ${snap.name} stopped there and its image is partly rolled back: ` +
        `the blocks it wrote before it stopped hold the snapshot's content, the others what the disk held. The disk refuses snapshots until ` +
        `a rollback completes. Ways out: ${VERIFY_NAMES_SHARERS}; rerun this rollback ` +
        `once the block is repaired (${SNAPSHOT_REWRITES}); roll back to another snapshot that does not share it; or \`blocksnap rollback ${disk.name} --abandon\` ` +
        'to keep the image as it is now and take snapshots again',
        { ...e.details, diskId: disk.id, snapshotId: snap.id, partlyRolledBack: true });
    }
    if (disk.format === 'raw') {
      // Stopped in its write pass (a full filesystem, an I/O error, a cancel): the bare error
      // did not say that the disk now refuses snapshots, nor that a rerun writes only the rest.
      const rerun = e.code === 'NoSpace' ? 'once the filesystem has room' : e.code === 'Cancelled' ? 'to finish it' : 'once the cause is fixed';
      return new BlocksnapError(e.code,
        `${e.message}. The rollback of disk ${disk.name} to ${snap.name} stopped partway and its image is partly rolled back: ` +
        `the blocks it wrote hold the snapshot's content, the others what the disk held. The disk refuses snapshots until a rollback ` +
        `completes: rerun it ${rerun} (it writes only what still differs), or \`blocksnap rollback ${disk.name} --abandon\` to keep the ` +
        'image as it is now and take snapshots again',
        { ...e.details, diskId: disk.id, snapshotId: snap.id, partlyRolledBack: true });
    }
    return e;
  }

  /**
   * Puts back the journal the raw `disk` had before job `jobId`, whose rollback wrote nothing:
   * none (the disk is as it was), or an earlier unfinished rollback's, whose target the blocks
   * it wrote still hold. True when it did.
   */
  private restoreRawJournal(disk: DiskRecord, jobId: string, previous: PendingRollbackRecord | null, why: string): boolean {
    try {
      return this.x.catalog.txn(() => {
        const d = this.x.catalog.getDisk(disk.id);
        const p = d?.pendingRollback;
        if (!d || !p || p.jobId !== jobId) return false;
        this.x.catalog.putDisk({ ...d, pendingRollback: previous });
        this.x.log.warn({ diskId: d.id, snapshotId: p.snapshotId, jobId }, previous === null
          ? `raw rollback ${why} before it wrote anything; the disk is unchanged and its rollback journal was cleared`
          : `raw rollback ${why} before it wrote anything; the journal of the earlier unfinished rollback is kept`);
        return true;
      });
    } catch (err) {
      this.x.log.error({ err, diskId: disk.id, jobId }, 'could not restore the journal of a raw rollback that left its disk unchanged');
      return false;
    }
  }

  /**
   * Clears the journal `jobId` wrote on `disk` when the rollback never touched its image
   * (untouchedImage): a qcow2 disk whose path still names the file journaled, a raw disk whose
   * journal says no write had begun. True when it did. `interrupted`: at start, after a crash,
   * where the job's record (interrupted) then says so too.
   */
  clearUntouchedRollback(disk: DiskRecord, jobId: string, why: string, interrupted = false): boolean {
    try {
      return this.x.catalog.txn(() => {
        const d = this.x.catalog.getDisk(disk.id);
        const p = d?.pendingRollback;
        if (!d || !p || p.jobId !== jobId || !untouchedImage(d, p)) return false;
        this.x.catalog.putDisk({ ...d, pendingRollback: null });
        const stage = d.format === 'qcow2' ? 'before its new image replaced the disk file' : 'before it wrote anything';
        const job = interrupted ? this.x.catalog.getJob(jobId) : undefined;
        if (job?.state === 'interrupted' && job.error) {
          this.x.catalog.putJob({ ...job, error: { ...job.error, message: `${job.error.message}, ${stage}: disk ${d.name} is as it was and takes snapshots as before` } });
        }
        this.x.log.warn({ diskId: d.id, snapshotId: p.snapshotId, jobId }, `${d.format} rollback ${why} ${stage}; the disk is unchanged and its rollback journal was cleared`);
        return true;
      });
    } catch (err) {
      // The journal stays: the disk refuses snapshots until a rerun, as before, and the next start looks again.
      this.x.log.error({ err, diskId: disk.id, jobId }, `could not clear the journal of a ${disk.format} rollback that left its disk unchanged`);
      return false;
    }
  }
}

/** Whether the unfinished rollback `p` of `d` certainly left the image as it was. */
function untouchedImage(d: DiskRecord, p: PendingRollbackRecord): boolean {
  if (d.format === 'raw') return p.writesBegun === false;
  return p.imageBefore !== undefined && stillSameFile(d.path, p.imageBefore);
}

/** What the image holds once the unfinished rollback `p` of `d` is abandoned (RollbackAbandoned). */
export function abandonedImage(d: DiskRecord, p: PendingRollbackRecord): AbandonedImage {
  if (d.format !== 'qcow2') return p.writesBegun === false ? 'unchanged' : 'partial';
  if (p.imageBefore === undefined) return 'unknown';
  return stillSameFile(d.path, p.imageBefore) ? 'unchanged' : 'replaced';
}

export function abandonedMessage(d: DiskRecord, image: AbandonedImage, target: string): string {
  const rest = 'The disk takes snapshots again; its head snapshot (the parent of the next one) is as before the rollback.';
  switch (image) {
    case 'partial':
      return `The rollback of ${d.name} to ${target} was abandoned. The image keeps what it left: blocks the rollback had written hold ` +
        `${target}'s content, the others what the disk held before, possibly a mix of the two. ${rest}`;
    case 'unchanged': {
      const why = d.format === 'qcow2' ? 'its new image never replaced the disk file' : 'it stopped before it wrote anything';
      return `The rollback of ${d.name} to ${target} was abandoned. The image is the one from before it: ${why}. ${rest}`;
    }
    case 'replaced':
      return `The rollback of ${d.name} to ${target} was abandoned. The disk file is no longer the one from before it: the rollback's new image ` +
        `(${target}'s content) was renamed over it, unless something else replaced the file. ${rest}`;
    case 'unknown':
      return `The rollback of ${d.name} to ${target} was abandoned. The image is the one from before it, unless the rollback's new image ` +
        `(${target}'s content) had already been renamed over the disk file (the journal, written by an older version, does not tell). ${rest}`;
  }
}
