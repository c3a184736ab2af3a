/**
 * What the engine must know about an image before it touches it: its format and virtual size,
 * whether its qcow2 backing chain stays inside the image roots, and whether a QEMU process holds
 * it (a running VM, qemu-nbd, qemu-img), read from QEMU's own OFD image locks. Stateless: every
 * answer is read from the file when asked, because all of it can change between two jobs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, fstatSync, lstatSync, readSync, statfsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { formatBytes } from '../size-text';
import { MAX_BLOCK_COUNT } from '../stream/snapshot-fields';
import { checkAttributesCopyable, inodeFlags, probeBackingFormat, probeImageLocks, qcow2Header, type CheckedBacking, type FileIdentity, type ImageLocks, type Qcow2Header } from '../native';
import type { DiskRecord, JournaledFile } from '../catalog/records';
import { statfsSpace } from '../catalog/write-errors';
import { checkNotBindMounted } from './bind-mounts';
import { openCheckedFile, resolveExistingImage } from './paths';
import type { DiskFormat, ImageFormat, SnapshotConsistency } from './types';
import type { UserAccess } from './user-access';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

/**
 * qcow2 when the file starts with QEMU's magic, raw otherwise. `path` is a checked real path,
 * opened without following a symlink (openCheckedFile): this runs on the daemon's only thread,
 * where a FIFO swapped in after the check would have blocked the open, and every client, forever.
 */
export function detectFormat(path: string, expected?: FileIdentity): ImageFormat {
  const { fd } = openCheckedFile(path, path, expected);
  try {
    const head = Buffer.alloc(4);
    const n = readSync(fd, head, 0, 4, 0);
    return n === 4 && head.equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  } finally {
    closeSync(fd);
  }
}

/**
 * Refuses (NotAnImage) to read or write an image in the format its disk was registered with when
 * the file no longer has it, naming what happened and the ways out.
 *
 * A disk whose format was detected as raw at `disk add` and whose image now starts with the qcow2
 * magic was converted to qcow2 under the same name (qemu-img convert, then mv) or replaced by a
 * qcow2 image: read as raw, a snapshot would hold the qcow2 file's bytes instead of the guest's
 * disk and a rollback would write raw blocks into it. A disk registered with --format raw stays
 * raw whatever its first bytes: a guest may itself write a qcow2 header at the start of its raw
 * disk (a nested VM's image on a whole disk), which only the operator can tell (`disk add PATH
 * --format raw` of the registered disk records that choice, Engine.confirmRaw). A record from
 * before the choice was recorded counts as detected (formatSource).
 *
 * A qcow2 disk whose image no longer starts with the magic was converted to raw or replaced; its
 * header check would refuse it too, but only as "not a qcow2 image", without the ways out.
 * `path` is the disk's checked real path; `expected`, the file the rights of its registrant were decided on.
 */
export function checkFormatKept(disk: { id: string; name: string; format: DiskFormat; formatSource?: 'detected' | 'given' }, path: string, expected?: FileIdentity): void {
  if (disk.format === 'qcow2') {
    if (detectFormat(path, expected) === 'qcow2') return;
    throw new BlocksnapError('NotAnImage',
      `${path} no longer starts with the qcow2 magic (QFI\\xfb), but disk ${disk.name} was registered as qcow2: the image was converted ` +
      'to raw or replaced by another file, and it is not read or written as qcow2. Convert it back to qcow2 (qemu-img convert -f raw -O qcow2), ' +
      `or register it again as raw, which deletes its snapshots (blocksnap disk remove ${disk.name} --delete-snapshots, then blocksnap disk add ${path} --format raw)`,
      { path, diskId: disk.id, format: 'qcow2', found: 'raw' });
  }
  if (disk.format !== 'raw' || disk.formatSource === 'given' || detectFormat(path, expected) !== 'qcow2') return;
  throw new BlocksnapError('NotAnImage',
    `${path} now starts with the qcow2 magic (QFI\\xfb), but disk ${disk.name} was registered as raw (detected): the image was ` +
    'converted to qcow2 or replaced by a qcow2 image, and it is not read or written as raw (a snapshot would hold the qcow2 file\'s bytes ' +
    'instead of the disk\'s, a rollback would write raw blocks into it). Convert it back to raw (qemu-img convert -f qcow2 -O raw), ' +
    `or register it again as qcow2, which deletes its snapshots (blocksnap disk remove ${disk.name} --delete-snapshots, then blocksnap disk add ${path} --format qcow2); ` +
    `if the guest itself wrote these bytes at the start of its raw disk, confirm its format with blocksnap disk add ${path} --format raw ` +
    '(the disk and its snapshots stay)',
    { path, diskId: disk.id, format: 'raw', found: 'qcow2' });
}

/**
 * Refuses (NotAnImage) a file with the setuid or setgid bit, whoever asks: no disk image has
 * either, and a raw rollback writes the disk's file in place with the daemon's rights, which keep
 * them (root holds CAP_FSETID). A setuid-root program registered or relocated as a disk would,
 * once rolled back to a snapshot of other content, run that content as root.
 */
export function checkNotSetId(path: string): void {
  const mode = statSync(path).mode;
  if ((mode & 0o6000) === 0) return;
  const bits = [(mode & 0o4000) !== 0 ? 'setuid' : '', (mode & 0o2000) !== 0 ? 'setgid' : ''].filter((b) => b !== '').join(' and ');
  throw new BlocksnapError('NotAnImage',
    `${path} has the ${bits} bit (mode ${(mode & 0o7777).toString(8).padStart(4, '0')}), which no disk image has: it is a program, ` +
    'and a rollback would rewrite it keeping the bit; clear it (chmod ug-s) if this file really is a disk image',
    { path, mode: mode & 0o7777 });
}

/**
 * The guest-visible size of the image at the checked real path `path` now: its header's virtual
 * size for qcow2 (the backing chain is not read), its file size for raw. With `expected`, the file
 * read must be the one a client's rights were decided on (FileIdentity).
 */
export function imageSize(path: string, format: ImageFormat, expected?: FileIdentity): bigint {
  return format === 'qcow2' ? BigInt(qcow2Header(path, expected ? { expected } : {}).sizeBytes) : rawSize(path, expected);
}

/**
 * Refuses (ImageTooLarge) an image of `sizeBytes` with more blocks of `blockSize` than a snapshot
 * may hold (MAX_BLOCK_COUNT, the most a stream or a remote carries). A qcow2 header can claim
 * petabytes in a file of a few MiB, and a scan holds 32 bytes a block for the whole size.
 * Returns the size as a number, exact: MAX_BLOCK_COUNT blocks of MAX_BLOCK_SIZE are 2^53 bytes.
 * Counted in bigint, so that a size past 2^53 is neither rounded into the limit nor misreported.
 */
export function checkBlockCount(path: string, sizeBytes: bigint, blockSize: number): number {
  const blocks = (sizeBytes + BigInt(blockSize) - 1n) / BigInt(blockSize);
  if (blocks <= BigInt(MAX_BLOCK_COUNT)) return Number(sizeBytes);
  throw new BlocksnapError('ImageTooLarge',
    `${path} has a virtual size of ${formatBytes(Number(sizeBytes))} (${sizeBytes} bytes), ${blocks} blocks of ${formatBytes(blockSize)}; ` +
    `a snapshot holds at most ${MAX_BLOCK_COUNT} blocks (${formatBytes(MAX_BLOCK_COUNT * blockSize)} with this store's block size)`,
    { path, sizeBytes: Number(sizeBytes), blocks: Number(blocks), maxBlocks: MAX_BLOCK_COUNT });
}

/** The size of the regular file at the checked real path `path`, never through a symlink. */
function rawSize(path: string, expected?: FileIdentity): bigint {
  const { fd } = openCheckedFile(path, path, expected);
  try {
    return fstatSync(fd, { bigint: true }).size;
  } finally {
    closeSync(fd);
  }
}

/** The format of a disk that is an image file (the callers handled copy-on-write disks before). */
export function imageFormatOf(d: DiskRecord): ImageFormat {
  if (d.format === 'cow') throw new BlocksnapError('Internal', `disk ${d.name} is a copy-on-write disk, not an image file`);
  return d.format;
}

/** A qcow2 image and its backing chain, every backing file checked against the image roots (inspectImage). */
export interface Qcow2Info extends Omit<Qcow2Header, 'backingPath' | 'backingFormat' | 'dev' | 'ino'> {
  /** The format of the first backing file: as the header records it, else probed; null without one. */
  backingFormat: 'raw' | 'qcow2' | null;
  /**
   * The image, then each backing file as QEMU opens it (relative names resolved), each with the
   * backing name its header stores (null for a raw file and the end of the chain).
   */
  chain: Array<{ path: string; format: 'raw' | 'qcow2'; backingFile: string | null }>;
}

export interface ImageFacts {
  /**
   * Guest-visible size: the file size of a raw image, the virtual size of a qcow2 one. A bigint:
   * a sparse raw file may be up to 2^63 - 1 bytes, which a number rounds (a qcow2 header claiming
   * more than 2^53 is refused as corrupt, native/formats/qcow2_format.h); a number once
   * checkBlockCount took it.
   */
  sizeBytes: bigint;
  qcow2: Qcow2Info | null;
  /**
   * The backing files as checked, nearest first: what a scan of this image may read, and all it
   * may (scanImage's backingChain). Empty for a raw image.
   */
  backingChain: CheckedBacking[];
}

/** Deeper chains are refused, as the scan refuses them (kMaxBackingDepth in native/formats/qcow2_reader.h). */
const MAX_BACKING_DEPTH = 64;

/**
 * Validates an image for use as `format`. A qcow2 image's header and whole backing chain are
 * parsed (ImageCorrupt / UnsupportedFormat / NotAnImage), and every backing file must lie inside
 * an image root like the image itself: the daemon reads backing files with its own rights, so a
 * backing file name is as much a client-supplied path as the image's. So the chain is followed
 * one file at a time, and each backing name is checked before anything opens the file it names,
 * even to probe its format: opened first, a file outside the roots would be read with the
 * daemon's rights, an error would describe it ("not a qcow2 image", "does not exist"), and a FIFO
 * or a device could block the open or act on it. Whoever can write inside a root can change the
 * chain after this check, so a scan is handed the checked chain and reads exactly that
 * (`backingChain`), never the names it finds in the headers then. For `user` (a client that is
 * neither root nor the daemon's user, or the one who registered the disk), each backing file must
 * also be one that user may read, checked before it is opened; each file opened for it, the image
 * (whose rights the caller had `user` decide) and each backing file, must be the one decided on
 * (FileIdentity), and the chain returned names them so that the job's reads are held to them too.
 */
export function inspectImage(path: string, format: ImageFormat, roots: string[], user?: UserAccess): ImageFacts {
  const expected = user?.identity(path);
  if (user !== undefined && expected === undefined) throw new BlocksnapError('Internal', `the rights on ${path} were not decided before it was inspected`, { path });
  if (format === 'raw') return { sizeBytes: rawSize(path, expected), qcow2: null, backingChain: [] };
  const top = qcow2Header(path, { ...(expected ? { expected } : {}) });
  const chain: Qcow2Info['chain'] = [{ path, format: 'qcow2', backingFile: top.backingFile }];
  const backingChain: CheckedBacking[] = [];
  const seen = new Set([`${top.dev}:${top.ino}`]);
  for (let image = top; image.backingPath !== null;) {
    if (backingChain.length >= MAX_BACKING_DEPTH) {
      throw new BlocksnapError('UnsupportedFormat', `${path}: the backing chain is deeper than ${MAX_BACKING_DEPTH} images`, { path });
    }
    const name = image.backingPath;
    const realPath = checkedBackingFile(path, name, roots);
    const decided = user?.checkFile(realPath, name, ['read']);
    const held = decided ? { expected: decided } : {};
    // Unrecorded, the format is QEMU's probe's: a file another format claims is refused, not read as raw.
    const linkFormat = image.backingFormat ?? probeBackingFormat(realPath, { image: chain[chain.length - 1]!.path, name, ...held });
    // The name a backing file is reached by is where QEMU resolves its own backing name from, as the scan does.
    const next = linkFormat === 'qcow2' ? qcow2Header(realPath, { namedAs: name, ...held }) : null;
    const id = next === null ? lstatSync(realPath, { bigint: true }) : next;
    if (seen.has(`${id.dev}:${id.ino}`)) {
      throw new BlocksnapError('ImageCorrupt', `${path}: malformed qcow2 image: the backing chain refers back to an image already in it`, { path });
    }
    seen.add(`${id.dev}:${id.ino}`);
    chain.push({ path: name, format: linkFormat, backingFile: next?.backingFile ?? null });
    backingChain.push({ path: name, realPath, format: linkFormat, ...(decided ? { id: decided } : {}) });
    if (next === null) break;
    image = next;
  }
  const { backingPath: _name, backingFormat: _declared, dev: _dev, ino: _ino, ...header } = top;
  return { sizeBytes: BigInt(top.sizeBytes), qcow2: { ...header, backingFormat: chain[1]?.format ?? null, chain }, backingChain };
}

/** The real path of the backing file `name` of `image`, if it is an image file inside a root. */
function checkedBackingFile(image: string, name: string, roots: string[]): string {
  try {
    return resolveExistingImage(name, roots);
  } catch (err) {
    if (err instanceof BlocksnapError && err.code === 'PathNotAllowed' && err.details?.symlinkLoop === true) {
      throw new BlocksnapError('PathNotAllowed', `${image} has the backing file ${name}, which is a symlink loop (too many levels of symlinks)`, { path: image, backingFile: name });
    }
    if (err instanceof BlocksnapError && err.code === 'PathNotAllowed') {
      // The same words whether the name or a symlink on its way leads out: where it leads is not
      // told (a path outside the roots is refused alike whatever is there).
      throw new BlocksnapError('PathNotAllowed', `${image} has the backing file ${name}, which is outside every image root or leads out of them through a symlink`, { path: image, backingFile: name });
    }
    if (err instanceof BlocksnapError && err.code === 'ImageNotFound') {
      throw new BlocksnapError('ImageNotFound', `the backing file ${name} of ${image} does not exist`, { path: image, backingFile: name });
    }
    throw err;
  }
}

/**
 * QEMU resolves a relative backing file name from the directory of the path it opened; the
 * engine keeps an image's real path and resolves from there. For an image given through a symlink
 * in another directory the two can be different files, and a snapshot would then read another
 * disk than the VM's: refused (BackingFileAmbiguous) unless every link of the chain, as QEMU would
 * open it from `given`, is the same file as the engine's. Up to the first link that differs, the
 * two chains are the same files, so the backing names QEMU would read are the checked ones, and
 * the links are compared by (device, inode) only: nothing QEMU would open from `given` is opened,
 * since those names were never checked against the image roots.
 */
export function checkBackingAsGiven(given: string, real: string, facts: Qcow2Info): void {
  if (facts.chain.length < 2 || given === real) return;
  const fromGiven = [given];
  for (let i = 1; i < facts.chain.length; i++) fromGiven.push(resolveBackingName(fromGiven[i - 1]!, facts.chain[i - 1]!.backingFile!));
  const at = firstDifference(fromGiven.map((path) => ({ path })), facts.chain);
  if (at < 0) return;
  // The image whose relative backing name resolves two ways, and the file it means from its real
  // path; none when the link itself no longer leads to the real path (changed meanwhile).
  const referrer = at > 0 ? facts.chain[at - 1]! : null;
  const meant = facts.chain[at]!;
  const rebase = referrer ? `: qemu-img rebase -u -b ${meant.path} -F ${meant.format} ${referrer.path}` : '';
  throw new BlocksnapError('BackingFileAmbiguous',
    `${given} links to ${real}; QEMU opening ${given} reads ${fromGiven[at]!}, but from the real path it is ${meant.path}. Register the image by its real path (and point the VM at it), ` +
    `or give it an absolute backing name${rebase}`,
    { path: given, realPath: real, backingFile: facts.backingFile });
}

/**
 * Where QEMU looks for the backing file `name` of the image it opened as `image`
 * (resolve_backing_path in native/formats/backing_name.cc). The names here passed that function
 * when their headers were read, which refuses every protocol name but an absolute `file:` one.
 */
function resolveBackingName(image: string, name: string): string {
  if (name.startsWith('file:')) return name.slice('file:'.length);
  if (name.startsWith('/')) return name;
  const slash = image.lastIndexOf('/');
  return `${slash < 0 ? '.' : slash === 0 ? '/' : image.slice(0, slash)}/${name}`;
}

/** The first link where two chains name different files (or one has ended), -1 when none does. */
function firstDifference(a: Array<{ path: string }>, b: Array<{ path: string }>): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = i < a.length ? fileIdentity(a[i]!.path) : null;
    const y = i < b.length ? fileIdentity(b[i]!.path) : null;
    if (x === null || y === null || x.dev !== y.dev || x.ino !== y.ino) return i;
  }
  return -1;
}

/** (device, inode) of a file, or null when it cannot be read now (a moved image matches nothing). */
export function fileIdentity(p: string): { dev: bigint; ino: bigint } | null {
  try {
    const st = statSync(p, { bigint: true });
    return { dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

/** The file at `path` itself (a symlink is not followed) for a rollback's journal, or null when it cannot be read. */
export function journaledFile(path: string): JournaledFile | null {
  try {
    const st = lstatSync(path, { bigint: true });
    return { dev: String(st.dev), ino: String(st.ino), birthtimeNs: st.birthtimeNs > 0n ? String(st.birthtimeNs) : null };
  } catch {
    return null;
  }
}

/**
 * Whether `path` still names the file journaled as `was`. The birth time, where both have one,
 * tells a reused inode number from the same file.
 */
export function stillSameFile(path: string, was: JournaledFile): boolean {
  const now = journaledFile(path);
  if (now === null || now.dev !== was.dev || now.ino !== was.ino) return false;
  return now.birthtimeNs === null || was.birthtimeNs === null || now.birthtimeNs === was.birthtimeNs;
}

function describeLocks(path: string, l: ImageLocks): string {
  const parts: string[] = [];
  if (l.held.length > 0) parts.push(`holds ${l.held.join(', ')}`);
  if (l.notShared.length > 0) parts.push(`does not share ${l.notShared.join(', ')}`);
  return `a QEMU process (a running VM, qemu-nbd or qemu-img) has ${path} open: it ${parts.join(' and ')}`;
}

/**
 * Refuses (DiskInUse) to rewrite an image any QEMU process has open, whatever permissions it
 * holds: a reader would see the disk change under it too. `force` turns the refusal into a
 * returned description for the log.
 */
export function checkNotInUse(path: string, force: boolean): string | null {
  const l = probeImageLocks(path);
  if (l.held.length === 0 && l.notShared.length === 0) return null;
  const what = describeLocks(path, l);
  if (!force) {
    throw new BlocksnapError('DiskInUse', `${what}; stop it first, or pass --force to roll back anyway`, { path, held: l.held, notShared: l.notShared });
  }
  return what;
}

/**
 * `crash` while a QEMU process holds write permission on any of `files` (an image and its backing
 * files), `offline` otherwise.
 */
export function consistencyNow(files: readonly string[]): SnapshotConsistency {
  return files.some((f) => probeImageLocks(f).held.includes('write')) ? 'crash' : 'offline';
}

/** The longest file name Linux filesystems take (NAME_MAX), in bytes. */
const NAME_MAX = 255;

/**
 * The name a qcow2 rollback's new image gets beside the disk once complete, until it is renamed
 * over it: random, so that whoever may write the disk's directory cannot put anything there first
 * (a fixed name let them block every rollback with a directory there, and a root daemon removed
 * another user's file of that name). The rollback journals it (PendingRollbackRecord.tempName) to
 * find what a crash leaves. An image whose name leaves no room for the suffix gets a digest of its
 * name instead: with the suffixed name the rollback failed (ENAMETOOLONG) after it was journaled,
 * every rerun failed the same way, and the disk could be neither rolled back nor snapshotted again.
 */
export function rollbackTempName(path: string): string {
  const random = randomBytes(8).toString('hex');
  const base = basename(path);
  const name = `.${base}.blocksnap-rollback-${random}`;
  if (Buffer.byteLength(name) <= NAME_MAX) return name;
  return `.blocksnap-rollback-${nameDigest(base)}-${random}`;
}

/**
 * The fixed names earlier versions gave the new image (`.<name>.blocksnap-rollback`, or a digest
 * of a long name): a journal from before the name was random may have left a file there.
 */
export function legacyRollbackTempName(path: string): string {
  const base = basename(path);
  const name = `.${base}.blocksnap-rollback`;
  return Buffer.byteLength(name) <= NAME_MAX ? name : `.blocksnap-rollback-${nameDigest(base)}`;
}

function nameDigest(base: string): string {
  return createHash('sha256').update(base).digest('hex').slice(0, 32);
}

/**
 * ImageResized when the image's guest size is no longer the `scanned` one. A scan reads the size
 * once, at its start: an image shrunk while it ran reads as zeros where it was cut, and one grown
 * keeps its new end out, so the snapshot would hold a disk of neither size. An image that cannot be
 * read now (removed, renamed over) is left to the stamp check, which makes the snapshot
 * crash-consistent: its blocks were all read whole.
 */
export function checkSizeKept(path: string, format: ImageFormat, scanned: number): void {
  let now: bigint;
  try {
    now = format === 'qcow2' ? BigInt(qcow2Header(path).sizeBytes) : statSync(path, { bigint: true }).size;
  } catch {
    return;
  }
  if (now === BigInt(scanned)) return;
  throw new BlocksnapError('ImageResized',
    `${path} changed size while the snapshot read it (${scanned} bytes at its start, ${now} now), so the snapshot would hold a disk of neither size; take the snapshot again`,
    { path, scannedBytes: scanned, sizeBytes: Number(now) });
}

/**
 * Refuses a qcow2 rollback that would drop what the file holds besides the guest's content: the
 * new image is written from the snapshot's content alone. Internal snapshots are not part of it,
 * nor are persistent dirty bitmaps, whose loss would break without a word the chain of
 * incremental backups (libvirt's, QEMU's) that starts from them.
 */
export function checkQcow2Rollback(path: string, info: Pick<Qcow2Header, 'internalSnapshots' | 'bitmaps'>): void {
  if (info.internalSnapshots > 0) {
    throw new BlocksnapError('ImageHasInternalSnapshots',
      `${path} holds ${info.internalSnapshots} internal qcow2 snapshot(s) (qemu-img snapshot -l) that rolling back would drop; ` +
      'delete them with qemu-img snapshot -d, or clone the snapshot to a new image instead',
      { path, internalSnapshots: info.internalSnapshots });
  }
  if (info.bitmaps > 0) {
    throw new BlocksnapError('ImageHasBitmaps',
      `${path} holds ${info.bitmaps} persistent dirty bitmap(s) (qemu-img info lists them) that rolling back would drop, ` +
      'breaking the incremental backups that rely on them; remove each with ' +
      `qemu-img bitmap --remove ${path} NAME (the next backup must then be a full one), or clone the snapshot to a new image instead`,
      { path, bitmaps: info.bitmaps });
  }
}

/**
 * What a rollback of the image at `path` needs, checked before it is journaled: a rollback that
 * fails after that leaves the disk refusing snapshots until it is rerun, and a rerun would fail
 * the same way. The daemon must be allowed to write the image: a raw rollback writes it in place,
 * and a qcow2 rollback, which renames a new image over it, must not replace a file its owner
 * made read-only. A qcow2 image must have no other name (a hard link, a bind mount: checkSingleName,
 * checkNotBindMounted) and hold no internal snapshots nor persistent bitmaps, and its new image must be able
 * to take the disk file's owner, mode and extended attributes (tried on a scratch file): the
 * rollback copies them only once the whole image is written, and refuses then if one cannot be
 * set, so that a rollback never changes who may access the disk. Given `space`, the new image
 * must fit beside the disk (checkRollbackSpace). A file given the setuid or setgid bit since it
 * was registered is refused as `disk add` refuses it (checkNotSetId).
 */
export function checkRollbackTarget(path: string, format: DiskFormat, space?: RollbackSpace): void {
  checkNotSetId(path);
  try {
    accessSync(path, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new BlocksnapError('PermissionDenied', `the daemon may not write ${path} (${code}), and a rollback rewrites it`, { path });
    }
    throw toBlocksnapError(err);
  }
  checkNotLockedByFlags(path, format);
  if (format === 'qcow2') {
    checkSingleName(path);
    checkNotBindMounted(path);
    const header = qcow2Header(path);
    checkQcow2Rollback(path, header);
    checkAttributesCopyable(path, join(dirname(path), rollbackTempName(path)));
    if (space !== undefined) checkRollbackSpace(path, header, space);
  }
}

/**
 * A qcow2 rollback renames a new image over the disk's name: any other name of the file (a hard
 * link) would keep the content from before the rollback, and a VM opening the image by that name
 * would not be rolled back at all, without a word.
 */
function checkSingleName(path: string): void {
  const links = statSync(path).nlink;
  if (links > 1) {
    throw new BlocksnapError('ImageHasHardLinks',
      `${path} has ${links} names (hard links), and a qcow2 rollback replaces only this one: the others would keep the content from before the rollback; ` +
      `remove the other names (find "$(stat -c %m ${path})" -xdev -samefile ${path} lists them all) or clone the snapshot to a new image instead`, { path, links });
  }
}

/** Refuses a rollback that an append-only or immutable image (or qcow2 image directory) would fail. */
function checkNotLockedByFlags(path: string, format: DiskFormat): void {
  const file = lockingFlag(path);
  if (file !== null) {
    const how = format === 'qcow2' ? 'replaces it with a new image' : 'rewrites it in place';
    throw new BlocksnapError('PermissionDenied', `${path} is ${file.text}, and a rollback ${how}; clear the flag (chattr -${file.letter} ${path}) first`, { path });
  }
  if (format !== 'qcow2') return;
  const dir = dirname(path);
  const flag = lockingFlag(dir);
  if (flag !== null) {
    throw new BlocksnapError('PermissionDenied',
      `directory ${dir} is ${flag.text}, and a qcow2 rollback renames a new image over ${basename(path)} in it; clear the flag (chattr -${flag.letter} ${dir}) first`, { path });
  }
}

function lockingFlag(path: string): { letter: 'a' | 'i'; text: string } | null {
  const f = inodeFlags(path);
  if (f.immutable) return { letter: 'i', text: 'immutable (chattr +i)' };
  if (f.appendOnly) return { letter: 'a', text: 'append-only (chattr +a)' };
  return null;
}

/** The snapshot a qcow2 rollback would write, for its space check (checkRollbackSpace). */
export interface RollbackSpace {
  snapshot: { sizeBytes: number; logicalBytes: number; blockSize: number };
  /**
   * Bytes the new images of the rollbacks starting together with this one (a group's) need, by
   * filesystem; this one's is added. Each fitting alone, together they may not.
   */
  reserved?: Map<string, number>;
  /** The new image an earlier attempt journaled (its tempName): the rollback removes it first. */
  leftover?: string | undefined;
}

/**
 * Refuses (NoSpace) a qcow2 rollback whose new image cannot fit beside the disk: it is written
 * whole before it replaces the old one, whose space comes back only then. Run out of space, the
 * rollback leaves the disk as it was, but only after writing all it could, and its error does not
 * say how much it wanted; this refuses before anything starts and says so. For an overlay it asks
 * for as much: how much of the snapshot's data its backing file already holds (and the new image
 * leaves to it) is known only by reading all of that, the rollback's own work. A filesystem that
 * keeps no space figures (ramfs, many FUSE filesystems: statfsSpace) has no limit to check: the
 * rollback goes ahead.
 */
export function checkRollbackSpace(path: string, header: Pick<Qcow2Header, 'clusterBits' | 'backingFile'>, space: RollbackSpace): void {
  const dir = dirname(path);
  const image = qcow2ImageBytes({ ...space.snapshot, clusterBits: header.clusterBits, backing: header.backingFile !== null });
  // Filesystem metadata of the new file (extent blocks), generously.
  const needed = image + MiB + Math.ceil(image / 1024);
  // Blocks reserved for root are the daemon's too when it runs as root.
  const fs = statfsSpace(statfsSync(dir), process.geteuid?.() === 0);
  if (fs === null) return;
  const free = fs.availableBytes + leftoverBytes(path, space.leftover);
  const key = String(statSync(dir).dev);
  const others = space.reserved?.get(key) ?? 0;
  space.reserved?.set(key, others + needed);
  if (others + needed <= free) return;
  const together = others > 0 ? ` (${formatBytes(others + needed)} with the other rollbacks of the group on that filesystem)` : '';
  // Which blocks equal the backing file's is known only once the rollback has read it all.
  const overlay = header.backingFile !== null
    ? '; as an overlay, it holds only what differs from its backing file, which may be much less, but that is known only once the rollback has read the backing file'
    : '';
  throw new BlocksnapError('NoSpace',
    `rolling back ${path} needs about ${formatBytes(needed)}${together} free in ${dir}, where its new image is written whole ` +
    `(the snapshot's ${formatBytes(space.snapshot.logicalBytes)} of data plus qcow2 metadata${overlay}) before it replaces the disk file; ` +
    `${formatBytes(free)} is free there. Free some space, or clone the snapshot to another filesystem instead`,
    { path, neededBytes: others + needed, freeBytes: free });
}

const MiB = 1024 * 1024;

/**
 * The most a qcow2 image the writer (native/formats/qcow2_writer.cc) makes of a snapshot can
 * allocate: header, L1 table, a cluster for every cluster a non-ZERO block touches (all-zero
 * clusters inside them are not written, so this may count more), the L2 tables over them (all
 * of them with a backing file, where ZERO clusters get entries that hide it), and the refcount
 * blocks and table. A v2 image's clusters that hide a backing file are holes, not allocated.
 */
export function qcow2ImageBytes(o: { sizeBytes: number; logicalBytes: number; blockSize: number; clusterBits: number; backing: boolean }): number {
  const cluster = 2 ** o.clusterBits;
  const clusters = Math.ceil(Math.ceil(o.sizeBytes / 512) * 512 / cluster);
  const l2Entries = cluster / 8;
  const l2Tables = Math.ceil(clusters / l2Entries);
  const l1Clusters = Math.ceil((l2Tables * 8) / cluster);
  // Only the last block may be short, so this counts the non-ZERO blocks.
  const dataBlocks = Math.ceil(o.logicalBytes / o.blockSize);
  const dataClusters = Math.min(clusters, dataBlocks * Math.ceil(o.blockSize / cluster));
  const l2Used = o.backing ? l2Tables : Math.min(l2Tables, dataBlocks * (Math.ceil(o.blockSize / (cluster * l2Entries)) + 1));
  const used = 1 + l1Clusters + l2Used + dataClusters;
  // The refcount blocks and table count themselves too (as the writer sizes them).
  const perBlock = cluster / 2;
  const perTable = cluster / 8;
  let blocks = Math.ceil(used / perBlock);
  let table = 0;
  for (;;) {
    table = Math.ceil(blocks / perTable);
    const need = Math.ceil((used + blocks + table) / perBlock);
    if (need <= blocks) break;
    blocks = need;
  }
  return (used + blocks + table) * cluster;
}

/**
 * Space the new image an earlier attempt left under `name` beside the disk at `path` holds, if
 * it is still there and the rollback will remove it: only a file of the owners
 * removeRollbackLeftovers takes (one another user put under the name stays, and so does its space).
 */
function leftoverBytes(path: string, name: string | undefined): number {
  if (name === undefined) return 0;
  try {
    const st = lstatSync(join(dirname(path), name));
    return st.isFile() && rollbackLeftoverOwners(path).includes(st.uid) ? st.blocks * 512 : 0;
  } catch {
    return 0;
  }
}

/** Whose file under a journaled rollback name is the rollback's own: the daemon's user, or the disk's owner (a root daemon gives the new image the disk's owner before it names it). */
export function rollbackLeftoverOwners(path: string): number[] {
  const owners = [process.geteuid?.() ?? -1];
  try {
    owners.push(lstatSync(path).uid);
  } catch {
    // No disk file: only the daemon's own.
  }
  return owners;
}
