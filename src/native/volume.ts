/**
 * Copy-on-write volumes (native/volume/, docs/design.md "Copy-on-write disks"): a writable top
 * layer over frozen layers over a snapshot's blocks, read and written on the libuv pool.
 *
 * This module validates arguments with the project's one message format and turns native
 * failures into BlocksnapError; the addon itself only rejects garbage safely. A Volume keeps its
 * files open until close(); after close every call fails with code Internal.
 */
import { BlocksnapError } from '../errors';
import { LAYER_ID_PATTERN } from '../store/cow-format';
import { DIGEST_SIZE, isValidBlockSize } from '../store/format';
import {
  fromNative, invalid, nativeAddon, ownerOptions, requireDigestList, requireObject, requirePath, runJob,
  type FileOwner, type JobOptions, type NativeJob, type ScanCounts,
} from './index';
import { IoBatches } from './io-batches';
import { MissBackoff } from './miss-backoff';

/** The two files of one overlay layer. */
export interface LayerFiles { dataPath: string; mapPath: string }

export interface VolumeSpec {
  /** `<data-dir>/blocks`. */
  storeDir: string;
  /**
   * `<data-dir>/granules`: the hash marks every 64 KiB of stored blocks, so that a first touch
   * verifies only the granules it needs (docs/design.md, "Copy-on-write disks"). Absent: every
   * first touch of a block verifies the whole block.
   */
  granuleDir?: string;
  /**
   * A writable volume with a granule dir verifies the base blocks its writes land in whole, on a
   * thread at idle priority, so that the next snapshot, which reads them whole, need not. A
   * damaged block it finds is reported for repair (store/damage-reports.ts). Default false.
   */
  backgroundVerify?: boolean;
  blockSize: number;
  sizeBytes: number;
  /** The base view: ceil(sizeBytes / blockSize) × 32 bytes, ZERO as 32 zero bytes. */
  baseDigests: Buffer;
  /** Bottom → top; may be empty (a read-only view of the base). */
  layers: LayerFiles[];
  /** The top layer takes writes (requires at least one layer). */
  writable: boolean;
}

/** One run of NBD base:allocation: flags NBD_STATE_HOLE (1) | NBD_STATE_ZERO (2), or 0 for data. */
export interface VolumeExtent { length: number; flags: number }

export interface ScanBlocksOptions extends JobOptions {
  /** Block indexes to read (dirtyBlocks gives them). */
  blocks: Uint32Array;
  /** Read through only the bottom `layerCount` layers and the base. */
  layerCount: number;
  /**
   * Digests of blocks known to be damaged in the store (n × 32): a block read that hashes to one
   * is written again over the damaged file, even where it equals the base's (ScanOptions.damagedDigests).
   */
  damagedDigests?: Buffer;
  /** In blocks. */
  onProgress?: (done: number, total: number) => void;
}

/** digests holds one digest per entry of `blocks`, in their order. */
export type ScanBlocksResult = ScanCounts;

export interface FlattenOptions extends JobOptions {
  layerCount: number;
  /** Created 0600, never through a symlink, nameless until complete (partial-files.ts); nothing is left if the job fails. */
  imagePath: string;
  /** The held directory (ImageDir.fd) to create the file in, by the last component of imagePath. */
  dirFd?: number;
  /** Who the new file is given to before it has a name; absent, it stays the daemon's user's. */
  owner?: FileOwner;
  format: 'raw' | 'qcow2';
  /** In bytes of the volume. */
  onProgress?: (done: number, total: number) => void;
}

export interface FlattenResult { sizeBytes: number; bytesWritten: number }

/** The largest read or write one call takes (an NBD request's limit). */
export const MAX_VOLUME_IO = 32 * 1024 * 1024;

interface NativeVolume {
  layerCount(): number;
  readInto(offset: number, length: number, target: Buffer, at: number): Promise<void>;
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  writeBatch(offsets: number[], buffers: Buffer[]): Promise<Array<unknown> | undefined>;
  readCached(offset: number, length: number, target: Buffer, at: number): boolean;
  writeCopiesUp(offset: number, length: number): boolean;
  zero(offset: number, length: number, mayPunch: boolean, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  extents(offset: number, length: number, max: number): Promise<VolumeExtent[]>;
  pushLayer(files: LayerFiles): Promise<void>;
  popEmptyTop(): Promise<boolean>;
  dirtyBlocks(layerCount: number): Promise<Uint32Array>;
  scanBlocks(o: object): NativeJob<ScanBlocksResult>;
  flattenTo(o: object): NativeJob<FlattenResult>;
  rebase(baseDigests: Buffer, dropLayers: number): Promise<void>;
  storeBytesRead(): number;
  writtenBytes(): number;
  close(): Promise<void>;
}

interface VolumeAddon {
  Volume: { new (spec: object): NativeVolume; open(spec: object): Promise<NativeVolume> };
  createVolumeLayer(o: object): Promise<void>;
  countWrittenBytes(o: object): Promise<number>;
  countWrittenBytesNow(o: object): number;
  closeIdleBlockFiles(o: object): number;
}

function addon(): VolumeAddon {
  return nativeAddon() as unknown as VolumeAddon;
}

/**
 * Creates an empty layer: .data sparse of `sizeBytes`, .map with its header and a clear bitmap;
 * O_EXCL, never through a symlink, 0600, both fsynced and the directory fsynced; the directory is
 * created where missing, each new level fsynced in its parent. FileExists if either file exists.
 */
export async function createLayer(files: LayerFiles, sizeBytes: number, layerId: string): Promise<void> {
  requireLayerFiles(files, 'files');
  requireSize(sizeBytes, 'sizeBytes');
  if (typeof layerId !== 'string' || !LAYER_ID_PATTERN.test(layerId)) invalid('layerId', '1 to 32 characters of [A-Za-z0-9._-]', layerId);
  try {
    await addon().createVolumeLayer({ dataPath: files.dataPath, mapPath: files.mapPath, sizeBytes, layerId });
  } catch (err) {
    throw fromNative(err);
  }
}

/**
 * Volume.writtenBytes for layers whose volume is not open, from their `.map` files as they are on
 * disk (bits a volume has not flushed are not there). Reads only the parts of each bitmap that
 * are not holes (a fresh layer's clear bitmap is one), a word at a time, on the libuv pool. A
 * missing map counts nothing (a layer being removed); a malformed one is ImageCorrupt.
 */
export async function countWrittenBytes(mapPaths: string[], sizeBytes: number): Promise<number> {
  requireMapPaths(mapPaths);
  requireSize(sizeBytes, 'sizeBytes');
  try {
    return await addon().countWrittenBytes({ mapPaths, sizeBytes });
  } catch (err) {
    throw fromNative(err);
  }
}

/** countWrittenBytes on the calling thread, for a caller that cannot wait. */
export function countWrittenBytesNow(mapPaths: string[], sizeBytes: number): number {
  requireMapPaths(mapPaths);
  requireSize(sizeBytes, 'sizeBytes');
  try {
    return addon().countWrittenBytesNow({ mapPaths, sizeBytes });
  } catch (err) {
    throw fromNative(err);
  }
}

/**
 * Closes the block files every volume of the process keeps open between reads, and drops the
 * verified payloads it keeps, where no read has used them for `idleMs` or longer; returns how
 * many files it closed. A read under way holds its file until it ends (native/volume/base_view.h).
 */
export function closeIdleBlockFiles(idleMs: number): number {
  if (!Number.isSafeInteger(idleMs) || idleMs < 0) invalid('idleMs', 'a non-negative integer', idleMs);
  try {
    return addon().closeIdleBlockFiles({ idleMs });
  } catch (err) {
    throw fromNative(err);
  }
}

function requireMapPaths(mapPaths: string[]): void {
  if (!Array.isArray(mapPaths)) invalid('mapPaths', 'an array of paths', mapPaths);
  mapPaths.forEach((p, i) => requirePath(p, `mapPaths[${i}]`));
}

/** Writes up to this size are gathered into batches (src/native/io-batches.ts). */
const BATCHED_WRITE_MAX = 64 * 1024;
/**
 * Reads up to this size are first tried on the JS thread from the page cache (readCached); a
 * larger copy would hold the event loop longer than a hand-off to the pool costs.
 */
const CACHED_READ_MAX = 256 * 1024;
/** After this many misses in a row, one read in 2^6 tries the page cache. */
const CACHED_MISS_BACKOFF = 6;
const BATCH_ITEMS = 64;
/** Batches running at once per volume. */
const BATCHES_IN_FLIGHT = 2;

export class Volume {
  private closed = false;
  private readonly cachedTries = new MissBackoff(CACHED_MISS_BACKOFF);
  private readonly writes: IoBatches<{ offset: number; data: Buffer }>;

  private constructor(
    private readonly native: NativeVolume,
    readonly sizeBytes: number,
    readonly writable: boolean,
  ) {
    this.writes = new IoBatches((w) => this.native.writeBatch(w.map((x) => x.offset), w.map((x) => x.data)), BATCHES_IN_FLIGHT, BATCH_ITEMS);
  }

  /**
   * Opens every layer and validates its map header (ImageCorrupt naming the file and field), on
   * the libuv pool: the open reads each layer's map and copies the base view, seconds for a disk
   * of many TiB, which on the event loop would hold every export and client of the daemon. A
   * bad argument or a failed open rejects. `spec.baseDigests` is lent: leave it unchanged until
   * the promise settles.
   */
  static async open(spec: VolumeSpec): Promise<Volume> {
    const native = nativeSpec(spec);
    try {
      return new Volume(await addon().Volume.open(native), spec.sizeBytes, spec.writable);
    } catch (err) {
      throw fromNative(err);
    }
  }

  /**
   * open on the calling thread, for a caller that cannot wait: a volume without layers (a
   * read-only snapshot export) costs the copy of its base view only.
   */
  static openNow(spec: VolumeSpec): Volume {
    const native = nativeSpec(spec);
    try {
      return new Volume(new (addon().Volume)(native), spec.sizeBytes, spec.writable);
    } catch (err) {
      throw fromNative(err);
    }
  }

  layerCount(): number {
    this.checkOpen();
    return this.native.layerCount();
  }

  /** The content of [offset, offset + length), at most 32 MiB; zeros where nothing was written. */
  async read(offset: number, length: number): Promise<Buffer> {
    // Checked before allocating: a bad or huge length is InvalidArgument, never an allocation.
    this.checkRead(offset, length);
    const out = Buffer.allocUnsafe(length);
    await this.readInto(offset, length, out, 0);
    return out;
  }

  /**
   * Fills target[at, at + length) with the content of [offset, offset + length), at most 32 MiB.
   * The caller keeps the Buffer (the NBD server reuses them) and must leave that range alone
   * until the promise settles.
   */
  async readInto(offset: number, length: number, target: Buffer, at: number): Promise<void> {
    this.checkRead(offset, length);
    if (!Buffer.isBuffer(target)) invalid('target', 'a Buffer', target);
    requireSize(at, 'at');
    if (at + length > target.length) invalid('at', `at most target.length - length = ${target.length - length}`, at);
    if (length <= CACHED_READ_MAX && this.readCached(offset, length, target, at)) return;
    return call(() => this.native.readInto(offset, length, target, at));
  }

  /**
   * Writes `data` (at most 32 MiB) at `offset`; `fua` makes it durable before resolving. `data`
   * must stay unchanged until the promise settles: small writes wait in a batch before the
   * native side copies them.
   */
  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    if (!Buffer.isBuffer(data)) invalid('data', 'a Buffer', data);
    this.checkRange(offset, data.length);
    if (data.length > MAX_VOLUME_IO) invalid('data', `at most ${MAX_VOLUME_IO} bytes long`, data);
    if (typeof fua !== 'boolean') invalid('fua', 'a boolean', fua);
    this.checkWritable();
    // A copy-up may wait for a disk: in a batch it would hold up the writes behind it, alone it
    // waits beside the others (several disk reads at once).
    if (!fua && data.length <= BATCHED_WRITE_MAX && !this.native.writeCopiesUp(offset, data.length)) {
      return call(() => this.writes.run({ offset, data }));
    }
    return call(() => this.native.write(offset, data, fua));
  }

  /**
   * Makes [offset, offset + length) read as zeros. With `mayPunch`, the whole granules it covers (4 KiB) become
   * one hole in the top layer; without it, zeros are written (NBD_CMD_FLAG_NO_HOLE).
   */
  async zero(offset: number, length: number, mayPunch: boolean, fua: boolean): Promise<void> {
    this.checkRange(offset, length);
    if (typeof mayPunch !== 'boolean') invalid('mayPunch', 'a boolean', mayPunch);
    if (typeof fua !== 'boolean') invalid('fua', 'a boolean', fua);
    this.checkWritable();
    return call(() => this.native.zero(offset, length, mayPunch, fua));
  }

  /**
   * Makes every write that resolved before this call durable: copies the dirty map pages,
   * fdatasyncs the top .data, writes the pages, fdatasyncs the .map. A read-only volume resolves.
   */
  async flush(): Promise<void> {
    this.checkOpen();
    return call(() => this.native.flush());
  }

  /**
   * NBD base:allocation of [offset, offset + length): base ZERO blocks and layer holes are 3, the
   * rest 0. The first `max` extents (1 to 2^20), each whole: the walk stops there, so its cost
   * follows what is returned, not how fragmented the range is.
   */
  async extents(offset: number, length: number, max: number): Promise<VolumeExtent[]> {
    this.checkRange(offset, length);
    return call(() => this.native.extents(offset, length, max));
  }

  /**
   * Flushes the top, freezes it and opens `files` (made by createLayer) as the new writable top.
   * The caller keeps writes, zeros and flushes out until this resolves.
   */
  async pushLayer(files: LayerFiles): Promise<void> {
    requireLayerFiles(files, 'files');
    this.checkWritable();
    return call(() => this.native.pushLayer({ dataPath: files.dataPath, mapPath: files.mapPath }));
  }

  /**
   * Undoes a pushLayer whose top took no write: closes the top, and the layer below takes writes
   * again. False, and nothing changes, when the top holds a write or is the only layer. The
   * caller keeps writes, zeros and flushes out meanwhile.
   */
  async popEmptyTop(): Promise<boolean> {
    this.checkWritable();
    return call(() => this.native.popEmptyTop());
  }

  /**
   * Sorted indexes of the blocks with any granule set in the bottom `layerCount` layers, found on
   * the libuv pool (every block of the disk is looked up in each layer's map).
   */
  async dirtyBlocks(layerCount: number): Promise<Uint32Array> {
    this.checkLayerCount(layerCount);
    return call(() => this.native.dirtyBlocks(layerCount));
  }

  /**
   * Reads `blocks` through only the bottom `layerCount` layers and the base (the layers above
   * keep taking writes), hashes them and stores new ones durably like scanImage.
   */
  async scanBlocks(o: ScanBlocksOptions): Promise<ScanBlocksResult> {
    requireObject(o, 'options');
    if (!(o.blocks instanceof Uint32Array)) invalid('blocks', 'a Uint32Array', o.blocks);
    this.checkLayerCount(o.layerCount);
    if (o.damagedDigests !== undefined) requireDigestList(o.damagedDigests, 'damagedDigests');
    return runJob(o, (onProgress) =>
      this.native.scanBlocks({ blocks: o.blocks, layerCount: o.layerCount, damagedDigests: o.damagedDigests, threads: o.threads, onProgress }),
    () => o.blocks.length);
  }

  /** Writes the content seen through the bottom `layerCount` layers and the base to a new image. */
  async flattenTo(o: FlattenOptions): Promise<FlattenResult> {
    requireObject(o, 'options');
    this.checkLayerCount(o.layerCount);
    requirePath(o.imagePath, 'imagePath');
    if (o.format !== 'raw' && o.format !== 'qcow2') invalid('format', "'raw' or 'qcow2'", o.format);
    return runJob(o, (onProgress) =>
      this.native.flattenTo({ layerCount: o.layerCount, imagePath: o.imagePath, dirFd: o.dirFd, ...ownerOptions(o.owner), format: o.format, threads: o.threads, onProgress }),
    () => this.sizeBytes);
  }

  /**
   * Replaces the base view and closes the bottom `dropLayers` layers, whose content the new base
   * now holds. The new view is made on the libuv pool while I/O goes on (a copy of `baseDigests`,
   * compared with the old view block by block); I/O waits only for the swap. A writable volume
   * keeps its top. `baseDigests` is lent: leave it unchanged until the promise settles; keep
   * other changes of the layer stack out meanwhile.
   */
  async rebase(baseDigests: Buffer, dropLayers: number): Promise<void> {
    requireDigestList(baseDigests, 'baseDigests');
    this.checkLayerCount(dropLayers, 'dropLayers');
    return call(() => this.native.rebase(baseDigests, dropLayers));
  }

  /**
   * Bytes read from block files since the volume opened: whole blocks verified, granules
   * verified, and in-place reads of verified ones.
   */
  storeBytesRead(): number {
    this.checkOpen();
    return this.native.storeBytesRead();
  }

  /**
   * Bytes of the disk written since the base: the 4 KiB pieces set in any layer's map, TRIMs and
   * zeroes included, bits not flushed yet included (a version 1 map's 64 KiB granule counts as its
   * 16 pieces; the last piece may be short). The volume keeps the count as its bits are set, so
   * this costs nothing whatever the size. After close, the count at the close.
   */
  writtenBytes(): number {
    try {
      return this.native.writtenBytes();
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** Flushes if writable and closes every file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    return call(() => this.native.close());
  }

  private checkOpen(): void {
    if (this.closed) throw new BlocksnapError('Internal', 'the volume is closed');
  }

  /**
   * A try that misses still costs the JS thread a few microseconds (system calls, locks,
   * lookups), in series with every other request; under cold random reads, mostly misses, that
   * made them 20-30% slower than without tries. So misses in a row thin the tries out.
   */
  private readCached(offset: number, length: number, target: Buffer, at: number): boolean {
    if (!this.cachedTries.tryNow()) return false;
    const hit = this.native.readCached(offset, length, target, at);
    this.cachedTries.record(hit);
    return hit;
  }

  private checkWritable(): void {
    this.checkOpen();
    if (!this.writable) throw new BlocksnapError('InvalidArgument', 'the volume is read-only');
  }

  private checkRead(offset: number, length: number): void {
    this.checkRange(offset, length);
    if (length > MAX_VOLUME_IO) invalid('length', `at most ${MAX_VOLUME_IO}`, length);
  }

  private checkRange(offset: number, length: number): void {
    this.checkOpen();
    requireSize(offset, 'offset');
    requireSize(length, 'length');
    if (offset + length > this.sizeBytes) {
      throw new BlocksnapError('InvalidArgument', `range ${offset}+${length} is past the end of the volume (${this.sizeBytes} bytes)`, {
        argument: 'offset',
      });
    }
  }

  private checkLayerCount(value: number, name = 'layerCount'): void {
    this.checkOpen();
    const layers = this.native.layerCount();
    if (!Number.isInteger(value) || value < 0 || value > layers) invalid(name, `an integer from 0 to ${layers}`, value);
  }
}

async function call<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw fromNative(err);
  }
}

function requireSize(value: unknown, name: string): void {
  if (!Number.isSafeInteger(value) || (value as number) < 0) invalid(name, 'a non-negative safe integer', value);
}

function requireLayerFiles(value: unknown, name: string): void {
  requireObject(value, name);
  const files = value as LayerFiles;
  requirePath(files.dataPath, `${name}.dataPath`);
  requirePath(files.mapPath, `${name}.mapPath`);
}

/** The checked spec, as the addon takes it. */
function nativeSpec(spec: VolumeSpec): object {
  requireObject(spec, 'spec');
  requirePath(spec.storeDir, 'storeDir');
  if (spec.granuleDir !== undefined) requirePath(spec.granuleDir, 'granuleDir');
  if (!isValidBlockSize(spec.blockSize)) invalid('blockSize', 'a power of two from 64 KiB to 64 MiB', spec.blockSize);
  requireSize(spec.sizeBytes, 'sizeBytes');
  requireDigestList(spec.baseDigests, 'baseDigests');
  const expected = Math.ceil(spec.sizeBytes / spec.blockSize) * DIGEST_SIZE;
  if (spec.baseDigests.length !== expected) invalid('baseDigests', `ceil(sizeBytes / blockSize) * ${DIGEST_SIZE} = ${expected} bytes long`, spec.baseDigests);
  if (!Array.isArray(spec.layers)) invalid('layers', 'an array', spec.layers);
  spec.layers.forEach((l, i) => requireLayerFiles(l, `layers[${i}]`));
  if (typeof spec.writable !== 'boolean') invalid('writable', 'a boolean', spec.writable);
  if (spec.writable && spec.layers.length === 0) invalid('layers', 'at least one layer for a writable volume', spec.layers);
  if (spec.backgroundVerify !== undefined && typeof spec.backgroundVerify !== 'boolean') invalid('backgroundVerify', 'a boolean', spec.backgroundVerify);
  return {
    storeDir: spec.storeDir, granuleDir: spec.granuleDir, blockSize: spec.blockSize, sizeBytes: spec.sizeBytes, baseDigests: spec.baseDigests,
    layers: spec.layers.map((l) => ({ dataPath: l.dataPath, mapPath: l.mapPath })), writable: spec.writable,
    // What the background verifier finds damaged, no request waits for: taken as a reader's
    // finding (fromNative → store/damage-reports.ts), so the block is recorded for repair now
    // rather than when some later read needs its damaged part.
    backgroundVerify: spec.backgroundVerify, onVerifyDamage: (err: unknown) => void fromNative(err),
  };
}
