/**
 * Writing a snapshot's content into an image, per format: rollback rewrites a disk's image,
 * clone creates a new one. Both read every block from the store verified against its digest.
 *
 * - raw rollback: in place, only blocks that differ (native applyImage), under QEMU's image locks.
 * - qcow2 rollback: a fresh qcow2 beside the image, renamed over it once complete and durable.
 *   The image is never half old, half new, whatever the crash point: before the rename it is
 *   the old image, after it the new one, and the engine's journal (pendingRollback) makes a
 *   rerun write it again. The new image keeps the old one's cluster size, compat level (v2/v3),
 *   compression type and backing file name and format. Where it has a backing file it holds only
 *   what differs from what that chain reads at the rollback (read as a scan reads it: the chain
 *   inspectImage checked), as the overlay did: a copy of the backing file's data in every
 *   rolled-back overlay would cost each the backing file's size. Space: up to the snapshot's
 *   allocated bytes beside the old image until the rename (less for an overlay, by how much is
 *   known only once the chain is read). QEMU's locks are held on both files throughout.
 * - qcow2 clone: a fresh v3 image with 64 KiB clusters and no backing file.
 *
 * The new image of a qcow2 rollback has no name while it is written (O_TMPFILE, like every file
 * a job creates: partial-files.ts), so a daemon killed meanwhile leaves nothing beside the disk,
 * wherever the disk's directory went. It gets its temp name (random, journaled: rollbackTempName)
 * once complete and fsynced, and is renamed over the disk at once. A kill in between, or while it
 * is written on a filesystem without O_TMPFILE (where it is created under its temp name), leaves
 * it under that name, as large as the disk; the next start removes it (removeRollbackLeftovers),
 * since a rerun is not bound to come (the disk may be removed instead), and so does a rerun.
 */
import { dirname, join } from 'node:path';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { applyImage, holdImageLocks, openImageDir, writeQcow2, type FileIdentity, type ImageDir, type JobPhase } from '../native';
import { checkQcow2Rollback, legacyRollbackTempName, rollbackLeftoverOwners, type ImageFacts } from './image-access';
import { insideRoots } from './paths';
import type { ImageFormat } from './types';
import type { PartialAt } from './partial-files';

export interface ContentWrite {
  storeDir: string;
  blockSize: number;
  sizeBytes: number;
  /** ceil(sizeBytes / blockSize) × 32 bytes, ZERO as 32 zero bytes. */
  digests: Buffer;
  threads?: number;
  onProgress: (done: number, total: number, phase?: JobPhase) => void;
  signal: AbortSignal;
}

export interface RollbackContent extends ContentWrite {
  /**
   * Raw: called once the apply has compared the image and checked every stored block it needs,
   * before its first write, which waits for it (applyImage's beforeWrite): the journal's record
   * that the image may no longer be as it was. A qcow2 rollback changes the disk only by the
   * rename of its new image, which the journal's `imageBefore` tells.
   */
  beforeWrite?: () => void;
  /**
   * The image whose rights were decided for the disk's registrant (registrant-access.ts), held by
   * the job: the file the apply writes, or the qcow2 rollback replaces and takes the attributes of,
   * must be it (FileIdentity). Absent for root's and the daemon's own disks.
   */
  imageId?: FileIdentity;
}

export interface RollbackWrite {
  /** The image's virtual size as written: the snapshot's, rounded up to 512 bytes for qcow2. */
  sizeBytes: number;
  /** Blocks written: raw, those that differed; a fresh qcow2, the snapshot's blocks copied into it from the store. */
  blocksWritten: number;
  bytesWritten: number;
  holesPunched: number;
  /** raw: ZERO targets that held data, zero-filled where the filesystem cannot punch holes. */
  blocksZeroed?: number;
  /**
   * Blocks not written: raw, those equal already; a fresh qcow2, ZERO blocks and blocksFromBacking
   * (blocksWritten + blocksUnchanged = the block count).
   */
  blocksUnchanged: number;
  /** A fresh image replaced the disk file (qcow2). */
  newImage: boolean;
  /** qcow2: data blocks left unallocated because the backing chain reads the same there. */
  blocksFromBacking?: number;
  /** qcow2: clusters that read as zeros over the backing chain's data (zero clusters; in v2, allocated clusters left as holes). */
  clustersZeroed?: number;
}

export interface CloneWrite { sizeBytes: number; bytesWritten: number }

function zeroBlocks(digests: Buffer): number {
  let n = 0;
  for (let off = 0; off < digests.length; off += 32) {
    let zero = true;
    for (let k = off; k < off + 32; k++) if (digests[k] !== 0) { zero = false; break; }
    if (zero) n++;
  }
  return n;
}

/**
 * `image`: a qcow2 image as inspectImage read it, just before the rollback was journaled: the
 * new image takes its cluster size, version, compression type, backing name and backing format,
 * and is compared with the backing chain checked then.
 * `tempName`: the name the journal gave its new image in the disk's directory (rollbackTempName).
 */
export async function rollbackImage(path: string, format: ImageFormat, w: RollbackContent,
  image: Pick<ImageFacts, 'qcow2' | 'backingChain'> = { qcow2: null, backingChain: [] }, tempName?: string): Promise<RollbackWrite> {
  const common = { storeDir: w.storeDir, blockSize: w.blockSize, sizeBytes: w.sizeBytes, digests: w.digests, onProgress: w.onProgress, signal: w.signal };
  if (format === 'raw') {
    let lock: ReturnType<typeof holdImageLocks>;
    try {
      if (w.signal?.aborted) throw new BlocksnapError('Cancelled', 'the job was cancelled before it started');
      lock = holdImageLocks(path);
    } catch (err) {
      // Nothing was written: the apply below marks its own failures before its first write the same way.
      const e = toBlocksnapError(err);
      throw new BlocksnapError(e.code, e.message, { ...e.details, imageUnchanged: true });
    }
    try {
      const r = await applyImage({
        ...common, imagePath: path, mode: 'update', ...(w.threads ? { threads: w.threads } : {}), ...(w.beforeWrite ? { beforeWrite: w.beforeWrite } : {}),
        ...(w.imageId ? { imageId: w.imageId } : {}),
      });
      return {
        sizeBytes: w.sizeBytes, blocksWritten: r.blocksWritten, bytesWritten: r.bytesWritten, holesPunched: r.holesPunched,
        blocksZeroed: r.blocksZeroed, blocksUnchanged: r.blocksUnchanged, newImage: false,
      };
    } finally {
      lock.release();
    }
  }
  const info = image.qcow2;
  if (info === null || tempName === undefined) {
    throw new BlocksnapError('Internal', `a rollback of the qcow2 image ${path} was started without its inspected header or its journaled temp name`);
  }
  checkQcow2Rollback(path, info);
  const r = await writeQcow2({
    ...common, imagePath: join(dirname(path), tempName), ...(w.threads ? { threads: w.threads } : {}), replace: path, ...(w.imageId ? { replaceId: w.imageId } : {}), clusterBits: info.clusterBits, version: info.version,
    compressionType: info.compressionType,
    ...(info.backingFile !== null && info.backingFormat !== null
      ? { backing: { file: info.backingFile, format: info.backingFormat, chain: image.backingChain } } : {}),
  });
  return {
    sizeBytes: r.sizeBytes, blocksWritten: r.blocksWritten, bytesWritten: r.bytesWritten, holesPunched: 0,
    blocksUnchanged: zeroBlocks(w.digests) + r.blocksFromBacking, newImage: true,
    blocksFromBacking: r.blocksFromBacking, clustersZeroed: r.clustersZeroed,
  };
}

/** `at`: the held directory of `target` to create it in, and who to give it to (partial-files.ts). */
export async function cloneImage(target: string, format: ImageFormat, w: ContentWrite, at?: Pick<PartialAt, 'dirFd' | 'owner'>): Promise<CloneWrite> {
  const common = {
    storeDir: w.storeDir, blockSize: w.blockSize, sizeBytes: w.sizeBytes, digests: w.digests, onProgress: w.onProgress, signal: w.signal,
    ...(at !== undefined ? { dirFd: at.dirFd } : {}), ...(at?.owner !== undefined ? { owner: at.owner } : {}),
  };
  if (format === 'raw') {
    const r = await applyImage({ ...common, imagePath: target, mode: 'create', ...(w.threads ? { threads: w.threads } : {}) });
    return { sizeBytes: w.sizeBytes, bytesWritten: r.bytesWritten };
  }
  const r = await writeQcow2({ ...common, imagePath: target, ...(w.threads ? { threads: w.threads } : {}) });
  return { sizeBytes: r.sizeBytes, bytesWritten: r.bytesWritten };
}

/**
 * Removes what an interrupted qcow2 rollback of the image at `path` left beside it; the number of
 * files removed. Only files the daemon made: a regular file under the name the journal gave the
 * new image (`tempName`), owned by the daemon's user or, since a root daemon gives the new image
 * the disk's owner before naming it, by the disk's owner; and under the fixed name of earlier
 * versions, owned by the daemon's user only, since anyone who may write the directory could have
 * put a file of theirs there. Anything else is left where it is. Only in the image's directory
 * opened without following a symlink (a directory of the path swapped for one must not send the
 * unlink elsewhere), and the unlink goes through that descriptor, so a swap after the check
 * cannot either.
 */
export async function removeRollbackLeftovers(path: string, roots: string[], tempName: string | undefined): Promise<number> {
  const dir = dirname(path);
  if (!insideRoots(dir, roots)) return 0;
  let held: ImageDir;
  try {
    held = openImageDir(dir);
  } catch {
    return 0;
  }
  const self = process.geteuid?.() ?? -1;
  try {
    let removed = 0;
    if (tempName !== undefined && held.removeOwnFile(tempName, rollbackLeftoverOwners(path)) === 'removed') removed++;
    if (held.removeOwnFile(legacyRollbackTempName(path), [self]) === 'removed') removed++;
    return removed;
  } finally {
    held.release();
  }
}

