/**
 * Typed wrappers around the native addon (native/, built by node-gyp into
 * build/Release/blocksnap_native.node). This is the only module that loads the addon.
 *
 * The addon computes; this module validates arguments with one message format, turns an
 * AbortSignal into the addon's cancel function, makes progress reports well behaved (never
 * after the promise settles, exactly one final `done === total`), and converts native failures
 * into BlocksnapError with the code and details (errno, syscall, path, blockIndex, digest) the
 * addon attached.
 *
 * Every async call runs off the JS thread on its own worker threads (one buffer of `blockSize`
 * bytes each), so memory does not grow with the image size beyond the digest array.
 */
import { join } from 'node:path';

import { BlocksnapError, isErrorCode, toBlocksnapError } from '../errors';
import { makeDirsDurably } from '../durable-dirs';
import { DIGEST_SIZE, isValidBlockSize } from '../store/format';
import { reportStoreDamage } from '../store/damage-reports';
import { reportFdExhaustion } from '../fd-exhaustion';

/** A backing file of a qcow2 image as it was checked against the image roots. */
export interface CheckedBacking {
  /** The name QEMU opens: the referring image's backing name resolved (Qcow2Header backingPath). */
  path: string;
  /** The real path `path` led to when it was checked: what a scan reads. */
  realPath: string;
  format: 'raw' | 'qcow2';
  /** The file whose rights were checked for a client (FileIdentity): the one opened must be it. */
  id?: FileIdentity;
}

/**
 * A file (st_dev, st_ino) whose rights were decided for a client who is neither root nor the
 * daemon's user, and which the engine holds open until the job that uses it ends, so that no other
 * file can take its inode number meanwhile. A job given one opens its path and refuses
 * (ImageReplaced) a file that is not it: another one renamed over the path, or a directory on it
 * swapped, after the rights were decided.
 */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
}

export interface ScanOptions {
  /** A regular file: a raw image, or a qcow2 image read through its tables and backing chain. */
  imagePath: string;
  /** How to read imagePath; default 'raw'. */
  format?: 'raw' | 'qcow2';
  /**
   * qcow2 only: the backing files checked against the image roots, nearest first
   * (CheckedBacking, from inspectImage), and the only files read besides the image. Each is
   * opened by its real path without following a symlink, and the scan fails with NotAnImage when
   * one was swapped in or the headers now name another chain. Absent: an image that names a
   * backing file is refused.
   */
  backingChain?: CheckedBacking[];
  /** The file imagePath must lead to (FileIdentity); absent for root's and the daemon's own disks. */
  imageId?: FileIdentity;
  /** `<data-dir>/blocks`; must exist. Fanout directories and `tmp/` are created on demand. */
  storeDir: string;
  /**
   * `<data-dir>/granules`: each block this scan stores also gets its granule file there (from the
   * same hash, best effort, no fsync; store/granule-format.ts). Absent: no granule files.
   */
  granuleDir?: string;
  /** Power of two, 64 KiB..64 MiB (isValidBlockSize). */
  blockSize: number;
  /**
   * The parent snapshot's digests (parent block count × 32 bytes, ZERO as 32 zero bytes). A block
   * whose digest equals the parent's at the same index is neither looked up in nor written to
   * the store. Lent to the job, not copied (32 bytes a block is 512 MiB for a 64 TiB image): it
   * must not change until the job settles.
   */
  parentDigests?: Buffer;
  /**
   * Digests of blocks known to be damaged in the store (n × 32 bytes; catalog/damaged-blocks.ts).
   * A block that hashes to one is written again over the damaged file (a fresh file renamed over
   * it), even where it equals the parent's; `repairedDigests` lists those rewritten.
   */
  damagedDigests?: Buffer;
  /** Default true. false hashes only (benchmarks, rollback planning). */
  writeBlocks?: boolean;
  /** Worker threads; default one per core. */
  threads?: number;
  /**
   * Bytes processed, of the bytes the scan may have to read (a raw image's data, a qcow2 image's
   * allocated clusters through its backing chain): at least every 250 ms while running, and once
   * at the end.
   */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Abort rejects the promise with code 'Cancelled' within about one block per thread. */
  signal?: AbortSignal;
}

/** What every scan reports (scan_counts.h), scanImage and Volume.scanBlocks alike. */
export interface ScanCounts {
  /** One digest of 32 bytes per block scanned, in order; ZERO blocks as 32 zero bytes. */
  digests: Buffer;
  /** Bytes actually read (holes are not read). */
  bytesRead: number;
  /** Blocks that are holes or all zero. */
  zeroBlocks: number;
  /** Block files this scan created in the store (a block another job stored first is not counted). */
  blocksWritten: number;
  /** Raw bytes of those blocks. */
  bytesWritten: number;
  /** The damagedDigests this scan wrote again from good bytes (n × 32, each once). */
  repairedDigests: Buffer;
  /**
   * The block files this scan created (n × 32): a snapshot that is not committed after all hands
   * them back (markFree). A failed scan's error carries them instead (writtenDigestsOf).
   */
  writtenDigests: Buffer;
}

/** digests holds blockCount digests. */
export interface ScanResult extends ScanCounts {
  sizeBytes: number;
  blockCount: number;
  /** The total progress counted: the bytes the scan may have had to read (onProgress). */
  progressTotal: number;
}

export interface ApplyOptions {
  imagePath: string;
  storeDir: string;
  blockSize: number;
  /** Exact final size of the image. */
  sizeBytes: number;
  /** Target content, ceil(sizeBytes / blockSize) × 32 bytes; lent to the job: unchanged until it settles. */
  digests: Buffer;
  /**
   * create: a new 0600 file (never through a symlink, nameless until complete: partial-files.ts),
   * fails FileExists; nothing is left if the apply fails. update: rewrite an existing image in place (never through a symlink).
   */
  mode: 'create' | 'update';
  /** create: the held directory (ImageDir.fd) to create the file in, by the last component of imagePath. */
  dirFd?: number;
  /** create: who the new file is given to before it has a name; absent, it stays the daemon's user's. */
  owner?: FileOwner;
  /** update: the file imagePath must lead to (FileIdentity), checked before anything is written. */
  imageId?: FileIdentity;
  threads?: number;
  /**
   * Bytes of work and the pass doing them (JobPhase). create: 'writing' the blocks that are not
   * ZERO, each by its length. update: 'comparing' the image's data bytes, then 'writing' the
   * blocks that differ, each by its length, after beforeWrite returned. The total starts with the
   * length of every block that is not ZERO and loses each the comparison finds needs no write, so
   * done over total never goes back. A phase change is never dropped.
   */
  onProgress?: (doneBytes: number, totalBytes: number, phase?: JobPhase) => void;
  signal?: AbortSignal;
  /**
   * update: called once every block has been compared and every stored block the update needs
   * checked, before the first change to the image, which waits for it to return: what it does
   * (synchronously) is done before the image changes. A throw stops the apply with the image as
   * it was; the apply then fails with what it threw, marked imageUnchanged.
   */
  beforeWrite?: () => void;
}

/** Every block is counted exactly once: blocksWritten + holesPunched + blocksZeroed + blocksUnchanged = block count. */
export interface ApplyResult {
  /** Blocks copied from the store (each verified against its digest before writing). */
  blocksWritten: number;
  bytesWritten: number;
  /** ZERO targets that held data, punched. */
  holesPunched: number;
  /** ZERO targets that held data, zero-filled where the filesystem cannot punch holes (ext2, many FUSE filesystems). */
  blocksZeroed: number;
  /** Blocks that already held the target content, so nothing was written: in update mode equal
   * blocks and ZERO targets already zero; in create mode every ZERO block (left as a hole). */
  blocksUnchanged: number;
  /** The total progress counted (onProgress). */
  progressTotal: number;
}

export interface VerifyProblem {
  digest: string;
  reason: 'missing' | 'corrupt-header' | 'digest-mismatch' | 'io-error';
  message: string;
}

export interface VerifyOptions {
  storeDir: string;
  /** Packed list (n × 32 bytes) of distinct stored digests to check; lent to the job: unchanged until it settles. */
  digests: Buffer;
  threads?: number;
  /** In blocks checked. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface VerifyResult {
  checked: number;
  /** In the order of `digests`. */
  problems: VerifyProblem[];
}

export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void;
}

interface NativeAddon {
  scanImage(o: object): NativeJob<ScanResult>;
  applyImage(o: object): NativeJob<ApplyResult>;
  verifyBlocks(o: object): NativeJob<VerifyResult>;
  hashBuffer(data: Buffer): Buffer;
  lockFile(path: string): { release(): void };
  lockDirectory(dir: string, holderFile: string): { release(): void };
  writeQcow2(o: object): NativeJob<Qcow2WriteResult>;
  qcow2Header(path: string, namedAs?: string, expected?: FileIdentity): Qcow2Header;
  probeBackingFormat(path: string, image: string, name: string, expected?: FileIdentity): 'raw' | 'qcow2';
  probeImageLocks(path: string): ImageLocks;
  holdImageLocks(path: string): { release(): void };
  openImageDir(path: string): NativeImageDir;
  checkAttributesCopyable(path: string, newImagePath: string): void;
  inodeFlags(path: string): InodeFlags;
  accessAcl(path: string): Buffer | null;
  socketPeer(fd: number): SocketPeer;
}

interface NativeImageDir {
  fd: number;
  link(from: string, to: string): void;
  rename(from: string, to: string, replace: boolean): void;
  unlink(name: string): boolean;
  removeOwnFile(name: string, uids: number[]): OwnFileRemoval;
  createFile(name: string): number;
  linkFile(fd: number, name: string): void;
  openFile(name: string): number;
  sync(): void;
  release(): void;
}

// src/native/ and dist/native/ are both two levels below the package root.
export const ADDON_PATH = join(__dirname, '..', '..', 'build', 'Release', 'blocksnap_native.node');

let addon: NativeAddon | undefined;

/** The raw binding, loaded on first use. Exported for tests of the native argument checks. */
export function nativeAddon(): NativeAddon {
  if (addon === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(ADDON_PATH) as NativeAddon;
    } catch (err) {
      throw new BlocksnapError(
        'Internal',
        `cannot load the native addon ${ADDON_PATH} (run npm install to build it): ${(err as Error).message}`,
      );
    }
  }
  return addon;
}

export async function scanImage(o: ScanOptions): Promise<ScanResult> {
  requireObject(o, 'options');
  requirePath(o.imagePath, 'imagePath');
  requirePath(o.storeDir, 'storeDir');
  if (o.granuleDir !== undefined) requirePath(o.granuleDir, 'granuleDir');
  requireBlockSize(o.blockSize);
  if (o.parentDigests !== undefined) requireDigestList(o.parentDigests, 'parentDigests');
  if (o.damagedDigests !== undefined) requireDigestList(o.damagedDigests, 'damagedDigests');
  if (o.writeBlocks !== undefined && typeof o.writeBlocks !== 'boolean') {
    invalid('writeBlocks', 'a boolean', o.writeBlocks);
  }
  if (o.format !== undefined && o.format !== 'raw' && o.format !== 'qcow2') invalid('format', "'raw' or 'qcow2'", o.format);
  if (o.backingChain !== undefined) {
    if (o.format !== 'qcow2') invalid('backingChain', 'absent for a raw image', o.backingChain);
    if (!Array.isArray(o.backingChain)) invalid('backingChain', 'an array', o.backingChain);
    requireCheckedChain(o.backingChain, 'backingChain');
  }
  return runJob(o, (onProgress) =>
    nativeAddon().scanImage({
      imagePath: o.imagePath,
      format: o.format,
      backingChain: o.backingChain && checkedChain(o.backingChain),
      imageId: o.imageId && identity(o.imageId),
      storeDir: o.storeDir,
      granuleDir: o.granuleDir,
      blockSize: o.blockSize,
      parentDigests: o.parentDigests,
      damagedDigests: o.damagedDigests,
      writeBlocks: o.writeBlocks,
      threads: o.threads,
      onProgress,
    }),
    (r) => r.progressTotal,
  );
}

export async function applyImage(o: ApplyOptions): Promise<ApplyResult> {
  requireObject(o, 'options');
  requirePath(o.imagePath, 'imagePath');
  requirePath(o.storeDir, 'storeDir');
  requireBlockSize(o.blockSize);
  if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes < 0) {
    invalid('sizeBytes', 'a non-negative safe integer', o.sizeBytes);
  }
  requireDigestList(o.digests, 'digests');
  const expected = Math.ceil(o.sizeBytes / o.blockSize) * DIGEST_SIZE;
  if (o.digests.length !== expected) {
    invalid('digests', `ceil(sizeBytes / blockSize) * ${DIGEST_SIZE} = ${expected} bytes long`, o.digests);
  }
  if (o.mode !== 'create' && o.mode !== 'update') invalid('mode', "'create' or 'update'", o.mode);
  if (o.beforeWrite !== undefined && (typeof o.beforeWrite !== 'function' || o.mode !== 'update')) {
    invalid('beforeWrite', "a function, in mode 'update'", o.beforeWrite);
  }
  const hook = o.beforeWrite;
  // The addon learns only whether to go on: what the hook threw is kept here and becomes the
  // apply's error, as a throwing progress callback's does.
  let stoppedBy: { err: unknown } | undefined;
  const beforeWrite = hook === undefined ? undefined : (): boolean => {
    try {
      hook();
      return true;
    } catch (err) {
      stoppedBy = { err };
      return false;
    }
  };
  try {
    return await runJob(o, (onProgress) =>
      nativeAddon().applyImage({
        imagePath: o.imagePath,
        storeDir: o.storeDir,
        blockSize: o.blockSize,
        sizeBytes: o.sizeBytes,
        digests: o.digests,
        mode: o.mode,
        dirFd: o.dirFd,
        ...ownerOptions(o.owner),
        imageId: o.imageId && identity(o.imageId),
        threads: o.threads,
        onProgress,
        beforeWrite,
      }),
      (r) => r.progressTotal,
    );
  } catch (err) {
    if (stoppedBy === undefined) throw err;
    const e = toBlocksnapError(stoppedBy.err);
    throw new BlocksnapError(e.code, e.message, { ...e.details, imageUnchanged: true });
  }
}

export async function verifyBlocks(o: VerifyOptions): Promise<VerifyResult> {
  requireObject(o, 'options');
  requirePath(o.storeDir, 'storeDir');
  requireDigestList(o.digests, 'digests');
  return runJob(o, (onProgress) =>
    nativeAddon().verifyBlocks({ storeDir: o.storeDir, digests: o.digests, threads: o.threads, onProgress }),
    (r) => r.checked,
  );
}

/** Synchronous SHA-256 (for tests and tools; jobs hash off the JS thread). */
export function hashBuffer(data: Buffer): Buffer {
  if (!(data instanceof Uint8Array)) invalid('data', 'a Buffer', data);
  return nativeAddon().hashBuffer(data);
}

export interface Qcow2WriteOptions {
  /** The file to create (0600, never through a symlink, nameless until complete); nothing is left if the write fails. */
  imagePath: string;
  storeDir: string;
  blockSize: number;
  /** Virtual size; the image gets it rounded up to 512 bytes (QEMU counts sectors). */
  sizeBytes: number;
  /** Content, ceil(sizeBytes / blockSize) × 32 bytes; ZERO blocks allocate nothing. Lent to the job: unchanged until it settles. */
  digests: Buffer;
  /** log2 of the cluster size, 9..21; default 16 (64 KiB). */
  clusterBits?: number;
  /** qcow2 version (compat 0.10 = 2, 1.1 = 3); default 3. */
  version?: 2 | 3;
  /**
   * Backing file name as it should be stored (relative names stay relative), with its format and
   * the backing files as checked (CheckedBacking, nearest first, from inspectImage; resolved from
   * imagePath's directory): the image holds only what differs from what that chain reads now.
   */
  backing?: { file: string; format: 'raw' | 'qcow2'; chain: CheckedBacking[] };
  /**
   * What QEMU compresses clusters written compressed later with; default zlib, zstd only for
   * version 3. Nothing is written compressed here.
   */
  compressionType?: 'zlib' | 'zstd';
  /**
   * Rollback: once imagePath is complete and durable it is renamed over this file. Both carry
   * QEMU's image locks meanwhile; the new file takes this file's owner, group and mode.
   */
  replace?: string;
  /** With replace: the file `replace` must lead to (FileIdentity), checked before its attributes are read or anything is written. */
  replaceId?: FileIdentity;
  /** The held directory (ImageDir.fd) to create the file in, by the last component of imagePath (not with replace). */
  dirFd?: number;
  /** Who the new file is given to before it has a name (not with replace); absent, it stays the daemon's user's. */
  owner?: FileOwner;
  /** Threads reading and verifying store blocks; default one per core. */
  threads?: number;
  /**
   * Bytes of data read: the snapshot's blocks that are not ZERO, and the backing chain's allocated
   * data where one is compared. With replace, 'comparing' until the new image is renamed over the
   * file (nothing of it changed before), 'writing' from then on.
   */
  onProgress?: (doneBytes: number, totalBytes: number, phase?: JobPhase) => void;
  signal?: AbortSignal;
}

export interface Qcow2WriteResult {
  sizeBytes: number;
  blocksWritten: number;
  bytesWritten: number;
  /** Size of the resulting file. */
  fileBytes: number;
  /** Non-ZERO blocks left unallocated, unread, their content being the backing chain's there. */
  blocksFromBacking: number;
  /** Clusters that read as zeros over the backing chain's data (zero clusters; in v2, allocated and left as holes). */
  clustersZeroed: number;
  /** The total progress counted: the data read, the snapshot's and the backing chain's (onProgress). */
  progressTotal: number;
}

function requireCheckedChain(chain: CheckedBacking[], name: string): void {
  for (const l of chain) {
    requirePath(l?.path, `${name}[].path`);
    requirePath(l?.realPath, `${name}[].realPath`);
    if (l.format !== 'raw' && l.format !== 'qcow2') invalid(`${name}[].format`, "'raw' or 'qcow2'", l.format);
  }
}

/** A checked chain as the addon takes it: only its own fields. */
function checkedChain(chain: CheckedBacking[]): CheckedBacking[] {
  return chain.map((l) => ({ path: l.path, realPath: l.realPath, format: l.format, ...(l.id ? { id: identity(l.id) } : {}) }));
}

/** A FileIdentity as the addon takes it: only its own fields. */
function identity(id: FileIdentity): FileIdentity {
  if (typeof id?.dev !== 'bigint' || typeof id.ino !== 'bigint') invalid('id', 'an object of two bigints { dev, ino }', id);
  return { dev: id.dev, ino: id.ino };
}

/** Writes a fresh qcow2 image holding `digests` (verified store blocks); see native/formats/qcow2_writer.h. */
export async function writeQcow2(o: Qcow2WriteOptions): Promise<Qcow2WriteResult> {
  requireObject(o, 'options');
  requirePath(o.imagePath, 'imagePath');
  requirePath(o.storeDir, 'storeDir');
  requireBlockSize(o.blockSize);
  if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes < 0) invalid('sizeBytes', 'a non-negative safe integer', o.sizeBytes);
  requireDigestList(o.digests, 'digests');
  const expected = Math.ceil(o.sizeBytes / o.blockSize) * DIGEST_SIZE;
  if (o.digests.length !== expected) invalid('digests', `ceil(sizeBytes / blockSize) * ${DIGEST_SIZE} = ${expected} bytes long`, o.digests);
  if (o.clusterBits !== undefined && (!Number.isInteger(o.clusterBits) || o.clusterBits < 9 || o.clusterBits > 21)) {
    invalid('clusterBits', 'an integer from 9 to 21', o.clusterBits);
  }
  if (o.version !== undefined && o.version !== 2 && o.version !== 3) invalid('version', '2 or 3', o.version);
  if (o.backing !== undefined) {
    requireObject(o.backing, 'backing');
    requirePath(o.backing.file, 'backing.file');
    if (o.backing.format !== 'raw' && o.backing.format !== 'qcow2') invalid('backing.format', "'raw' or 'qcow2'", o.backing.format);
    if (!Array.isArray(o.backing.chain) || o.backing.chain.length === 0) invalid('backing.chain', 'a non-empty array', o.backing.chain);
    requireCheckedChain(o.backing.chain, 'backing.chain');
  }
  if (o.compressionType !== undefined && o.compressionType !== 'zlib' && o.compressionType !== 'zstd') {
    invalid('compressionType', "'zlib' or 'zstd'", o.compressionType);
  }
  if (o.replace !== undefined) requirePath(o.replace, 'replace');
  return runJob(o, (onProgress) =>
    nativeAddon().writeQcow2({
      imagePath: o.imagePath, storeDir: o.storeDir, blockSize: o.blockSize, sizeBytes: o.sizeBytes, digests: o.digests,
      clusterBits: o.clusterBits, version: o.version, backingFile: o.backing?.file, backingFormat: o.backing?.format,
      backingChain: o.backing && checkedChain(o.backing.chain),
      compressionType: o.compressionType, replace: o.replace, replaceId: o.replaceId && identity(o.replaceId), dirFd: o.dirFd, ...ownerOptions(o.owner), threads: o.threads, onProgress,
    }),
    (r) => r.progressTotal,
  );
}

/** One qcow2 file's header (qcow2Header). */
export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  /** Virtual size. */
  sizeBytes: number;
  /** Internal snapshots in the file (`qemu-img snapshot -l`). */
  internalSnapshots: number;
  /**
   * Persistent dirty bitmaps in the file (`qemu-img info` lists them): 0 also when a program
   * without bitmap support wrote it since (autoclear bit 0 clear), as QEMU then ignores them.
   */
  bitmaps: number;
  extendedL2: boolean;
  /** Not closed cleanly (lazy refcounts); reading is still exact. */
  dirty: boolean;
  compressionType: 'zlib' | 'zstd';
  /** The backing file name as stored, or null. */
  backingFile: string | null;
  /** backingFile resolved as QEMU resolves it, from the name the image is known by (`namedAs`); null without one. */
  backingPath: string | null;
  /**
   * The backing format the header records. Null without a backing file, and when the header
   * records none: QEMU then probes the file, which the engine may do only once it checked it.
   */
  backingFormat: 'raw' | 'qcow2' | null;
  /** The file read: a chain that comes back to it refers back into itself. */
  dev: bigint;
  ino: bigint;
}

/**
 * The header of the qcow2 image at the checked real path `path`, opened without following a
 * symlink (NotAnImage when one was swapped in, or when it is no regular file), and where its
 * backing file is as QEMU would look for it from `namedAs` (default `path`): the name a backing
 * file was reached by, whose directory a relative name is resolved from. Opens no other file:
 * every backing file is checked against the image roots before anything opens it, even to probe
 * its format (inspectImage). Synchronous, a few small reads; NotAnImage, ImageCorrupt or
 * UnsupportedFormat (also for a backing name QEMU reads as a protocol, native/formats/backing_name.h,
 * or a backing format but raw and qcow2) naming what is wrong.
 */
export function qcow2Header(path: string, o: { namedAs?: string; expected?: FileIdentity } = {}): Qcow2Header {
  if (o.namedAs !== undefined) requirePath(o.namedAs, 'namedAs');
  return onPath(path, (addon) => addon.qcow2Header(path, o.namedAs, o.expected && identity(o.expected)));
}

/**
 * The format QEMU probes a backing file as when its image `image` records none: the checked real
 * path `path` (opened without following a symlink), which QEMU opens as `name`. qcow2 by its
 * magic, raw when no format QEMU probes claims the file; UnsupportedFormat when one does (vmdk,
 * vhdx, vpc, vdi, qed, luks, ...: native/formats/format_probe.h), which would otherwise be read as
 * raw while the VM sees the disk inside it.
 */
export function probeBackingFormat(path: string, o: { image: string; name: string; expected?: FileIdentity }): 'raw' | 'qcow2' {
  requirePath(o.image, 'image');
  requirePath(o.name, 'name');
  return onPath(path, (addon) => addon.probeBackingFormat(path, o.image, o.name, o.expected && identity(o.expected)));
}

/** QEMU permissions other open files hold on an image (bytes 100+) and refuse to share (bytes 200+). */
export interface ImageLocks { held: string[]; notShared: string[] }

/** Which QEMU image locks others hold on `path`; see native/io/qemu_lock.h. */
export function probeImageLocks(path: string): ImageLocks {
  return onPath(path, (addon) => addon.probeImageLocks(path));
}

/** Holds QEMU's locks for every permission on `path` until release(), so QEMU refuses to open it. */
export function holdImageLocks(path: string): { release(): void } {
  const h = onPath(path, (addon) => addon.holdImageLocks(path));
  return { release: () => h.release() };
}

/**
 * Refuses, with the error a qcow2 rollback of `path` would end in after writing its whole new
 * image, a rollback that could not give that image the disk's owner, mode or an extended attribute
 * (a label or ACL the daemon may not set: PermissionDenied naming it), or could not create it in
 * the disk's directory at all. The same copy is tried on a scratch file there that no name leads
 * to once this returns; the disk is only read. `newImagePath` (a rollbackTempName beside it) names the new
 * image in the message. See native/io/file_attributes.h.
 */
export function checkAttributesCopyable(path: string, newImagePath: string): void {
  requirePath(path, 'path');
  requirePath(newImagePath, 'newImagePath');
  try {
    nativeAddon().checkAttributesCopyable(path, newImagePath);
  } catch (err) {
    throw fromNative(err);
  }
}

/** A user and group to give a file the daemon creates for a client (fchown before it is named). */
export interface FileOwner {
  uid: number;
  gid: number;
}

/** The native writers' owner options: both or neither. */
export function ownerOptions(owner: FileOwner | undefined): { ownerUid?: number; ownerGid?: number } {
  return owner === undefined ? {} : { ownerUid: owner.uid, ownerGid: owner.gid };
}

/**
 * The POSIX access ACL of the file or directory at `path` (symlinks followed), in the kernel's
 * binary form (system.posix_acl_access), or null when it has none; see native/io/file_attributes.h.
 */
export function accessAcl(path: string): Buffer | null {
  return onPath(path, (addon) => addon.accessAcl(path));
}

/** The chattr flags that keep even root from rewriting or replacing a file; see native/io/inode_flags.h. */
export interface InodeFlags {
  appendOnly: boolean;
  immutable: boolean;
}

/**
 * The append-only and immutable flags of the file or directory at `path` (symlinks followed);
 * none on a filesystem that keeps no such flags, or for a device.
 */
export function inodeFlags(path: string): InodeFlags {
  return onPath(path, (addon) => addon.inodeFlags(path));
}

/** A synchronous call of the addon about one file: the path checked, a native error mapped. */
function onPath<T>(path: string, call: (addon: NativeAddon) => T): T {
  requirePath(path, 'path');
  try {
    return call(nativeAddon());
  } catch (err) {
    throw fromNative(err);
  }
}

/** The other end of a connected Unix socket; see native/workers/peer_socket.h. */
export interface SocketPeer {
  uid: number;
  gid: number;
  pid: number;
  /** It closed its end for good (as opposed to shutting down only its sending side). */
  hungUp: boolean;
}

/** Who is at the other end of the Unix socket `fd`, and whether it is still there. */
export function socketPeer(fd: number): SocketPeer {
  try {
    return nativeAddon().socketPeer(fd);
  } catch (err) {
    throw fromNative(err);
  }
}

/**
 * A directory a job creates a file in, opened once without following a symlink anywhere in its
 * path: every later step (create, link, rename, unlink, fsync) goes through this descriptor, so a
 * component of the path swapped for a symlink, or the directory renamed, while the job runs cannot
 * send any of them to another directory.
 */
export interface ImageDir {
  readonly path: string;
  /** Lent to the native writers (dirFd), which duplicate it; valid until release(). */
  readonly fd: number;
  /** link(2) within the directory: FileExists if `to` exists. */
  link(from: string, to: string): void;
  /** rename(2) within the directory; without `replace`, FileExists if `to` exists. */
  rename(from: string, to: string, replace?: boolean): void;
  /** True if there was such a name. */
  unlink(name: string): boolean;
  /**
   * Unlinks `name` only if it is a regular file owned by one of `uids` (a leftover the daemon
   * made); anything else there is `kept`, whoever put it there.
   */
  removeOwnFile(name: string, uids: number[]): OwnFileRemoval;
  /**
   * A new 0600 file, open for reading and writing, that is to be called `name`: it has no name
   * (O_TMPFILE) until linkFile gives it one, so a daemon killed while writing it leaves nothing.
   * Where the filesystem cannot, it is created under `name` (O_EXCL, O_NOFOLLOW) at once. FileExists
   * if `name` is taken. The caller closes the descriptor.
   */
  createFile(name: string): number;
  /** Gives a complete (fsynced) file from createFile its name: FileExists if taken; nothing if it has it. */
  linkFile(fd: number, name: string): void;
  /**
   * An existing regular file, open read-only (O_NOFOLLOW; a FIFO does not block the open, it is
   * refused like any other non-regular file: NotAnImage); the caller closes the descriptor.
   */
  openFile(name: string): number;
  /** Makes the directory's entries durable. */
  sync(): void;
  release(): void;
}

/** What ImageDir.removeOwnFile did. */
export type OwnFileRemoval = 'removed' | 'absent' | 'kept';

/**
 * Opens `path` (a real path, checked against the image roots) as an ImageDir. A symlink on the
 * way was swapped in after the check (NotAnImage); a missing directory is ImageNotFound.
 */
export function openImageDir(path: string): ImageDir {
  requirePath(path, 'path');
  const wrap = <A extends unknown[], R>(f: (...a: A) => R) => (...a: A): R => {
    try {
      return f(...a);
    } catch (err) {
      throw fromNative(err);
    }
  };
  const d = wrap(() => nativeAddon().openImageDir(path))();
  return {
    path,
    fd: d.fd,
    link: wrap((from: string, to: string) => d.link(from, to)),
    rename: wrap((from: string, to: string, replace = false) => d.rename(from, to, replace)),
    unlink: wrap((name: string) => d.unlink(name)),
    removeOwnFile: wrap((name: string, uids: number[]) => d.removeOwnFile(name, uids)),
    createFile: wrap((name: string) => d.createFile(name)),
    linkFile: wrap((fd: number, name: string) => d.linkFile(fd, name)),
    openFile: wrap((name: string) => d.openFile(name)),
    sync: wrap(() => d.sync()),
    release: () => d.release(),
  };
}

/** The exclusive lock on a data directory; see lockDataDir. */
export interface DataDirLock {
  /** The lock file, `<data-dir>/lock`. */
  readonly path: string;
  /** Releases the lock. Idempotent. */
  release(): void;
}

/**
 * Takes the data directory's lock, synchronously: an flock() on the directory itself, which
 * deleting `<data-dir>/lock` cannot undo, and an OFD lock on that file (created with the directory
 * if missing), which records the holder's pid for operators. Fails with DataDirLocked while
 * another process, or another holder in this process, has it. Held until release(); dropping the
 * object without release() frees it only whenever the garbage collector gets to it, so always
 * release.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  requirePath(dataDir, 'dataDir');
  makeDirsDurably(dataDir, 0o700);
  const path = join(dataDir, 'lock');
  const handles: { release(): void }[] = [];
  try {
    handles.push(nativeAddon().lockDirectory(dataDir, path));
    handles.push(nativeAddon().lockFile(path));
  } catch (err) {
    for (const h of [...handles].reverse()) h.release();
    throw fromNative(err);
  }
  // The file's lock first: a daemon that gets the directory's must find the file's free too.
  return { path, release: () => { for (const h of [...handles].reverse()) h.release(); } };
}

export interface JobOptions {
  threads?: number;
  onProgress?: (done: number, total: number, phase?: JobPhase) => void;
  signal?: AbortSignal;
}

/** Which pass of a job of two runs (core/parallel.h): a rollback cancelled while 'comparing' leaves its image as it was. */
export type JobPhase = 'comparing' | 'writing';

type Progress = (done: number, total: number, phase?: JobPhase) => void;

/**
 * Runs one native job: wires the signal to its cancel function, filters progress, and maps a
 * native rejection to BlocksnapError. The error is created here, in an async function, so its
 * stack shows the awaiting callers rather than nothing (native code has no JS frames).
 */
export async function runJob<T>(
  o: JobOptions,
  start: (onProgress: Progress | undefined) => NativeJob<T>,
  finalTotal: (result: T) => number,
): Promise<T> {
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 1024)) {
    invalid('threads', 'an integer from 1 to 1024', o.threads);
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
    invalid('onProgress', 'a function', o.onProgress);
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) invalid('signal', 'an AbortSignal', o.signal);
  if (o.signal?.aborted) throw new BlocksnapError('Cancelled', 'the job was cancelled before it started');

  const userProgress = o.onProgress;
  let settled = false;
  let progressError: unknown;
  let job: NativeJob<T> | undefined;
  // A throwing progress callback is the caller's bug: it stops the job and becomes the rejection,
  // instead of escaping as an uncaught exception from inside the addon's callback.
  let lastPhase: JobPhase | undefined;
  const report = (done: number, total: number, phase?: JobPhase): void => {
    if (settled || userProgress === undefined || progressError !== undefined) return;
    lastPhase = phase;
    try {
      userProgress(done, total, phase);
    } catch (err) {
      progressError = err;
      job?.cancel();
    }
  };

  job = start(userProgress === undefined ? undefined : report);
  const cancel = job.cancel;
  o.signal?.addEventListener('abort', cancel, { once: true });
  try {
    const result = await job.promise;
    if (progressError !== undefined) throw progressError;
    const total = finalTotal(result);
    report(total, total, lastPhase);
    return result;
  } catch (err) {
    if (progressError !== undefined) throw progressError;
    throw fromNative(err);
  } finally {
    settled = true;
    o.signal?.removeEventListener('abort', cancel);
  }
}

const DETAIL_KEYS = ['errno', 'syscall', 'path', 'blockIndex', 'digest', 'imageUnchanged'] as const;

/** A native failure as a BlocksnapError with the code and details the addon attached. */
export function fromNative(err: unknown): BlocksnapError {
  if (err instanceof BlocksnapError) return err;
  if (!(err instanceof Error)) return new BlocksnapError('Internal', String(err));
  const native = err as Error & Record<string, unknown>;
  const details: Record<string, unknown> = {};
  for (const key of DETAIL_KEYS) if (native[key] !== undefined) details[key] = native[key];
  const code = isErrorCode(native.code) ? native.code : 'Internal';
  const e = new BlocksnapError(code, err.message, Object.keys(details).length > 0 ? details : undefined);
  if (Buffer.isBuffer(native.writtenDigests)) withWrittenDigests(e, native.writtenDigests);
  // A damaged block file found by any native reader is recorded for repair (store/damage-reports.ts).
  reportStoreDamage(e);
  reportFdExhaustion(e);
  return e;
}

// Kept off the details: those go to clients, and this can be megabytes of digests.
const WRITTEN = Symbol('writtenDigests');

/**
 * The block files a failed or cancelled scan created (n × 32), which its snapshot was to
 * reference: the engine frees those nothing else references rather than leave them to `store gc`.
 */
export function writtenDigestsOf(err: unknown): Buffer | undefined {
  const d = (err as { [WRITTEN]?: unknown } | null)?.[WRITTEN];
  return Buffer.isBuffer(d) ? d : undefined;
}

/** Attaches `digests` to `err` for writtenDigestsOf (a commit failing after its scan succeeded); returns err. */
export function withWrittenDigests<E>(err: E, digests: Buffer): E {
  if (typeof err === 'object' && err !== null && digests.length > 0 && writtenDigestsOf(err) === undefined) {
    Object.defineProperty(err, WRITTEN, { value: digests, enumerable: false, configurable: true });
  }
  return err;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Buffer.isBuffer(value)) return `a Buffer of ${value.length} bytes`;
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return value.length > 60 ? `a string of ${value.length} characters` : JSON.stringify(value);
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return String(value);
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      return 'an object';
  }
}

/** The one message format: "<name> must be <expectation>, got <value>". */
export function invalid(name: string, expectation: string, value: unknown): never {
  throw new BlocksnapError('InvalidArgument', `${name} must be ${expectation}, got ${describe(value)}`, {
    argument: name,
  });
}

export function requireObject(value: unknown, name: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalid(name, 'an object', value);
}

export function requirePath(value: unknown, name: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) {
    invalid(name, 'a non-empty path string', value);
  }
}

function requireBlockSize(value: unknown): void {
  if (!isValidBlockSize(value as number)) invalid('blockSize', 'a power of two from 64 KiB to 64 MiB', value);
}

export function requireDigestList(value: unknown, name: string): void {
  if (!Buffer.isBuffer(value)) invalid(name, 'a Buffer', value);
  if (value.length % DIGEST_SIZE !== 0) invalid(name, `a multiple of ${DIGEST_SIZE} bytes long`, value);
}
