/**
 * Whether a registered image disk's paths still lead to its image, checked before every job that
 * reads or writes it. A disk keeps its image's real path (`path`), and, when the operator named
 * the image otherwise (through a symlink: a Firecracker jailer's rootfs link, a libvirt volume
 * name), that name too (`givenPath`). Either can come to lead elsewhere while the disk stays
 * registered: a storage move leaves a symlink at the real path, and a libvirt external snapshot or
 * a retargeted jailer link points the given name at a new file while the old one, frozen, stays.
 * Read from the old file, every snapshot would then hold a disk no VM writes any more and report
 * nothing changed. Both are refused until the operator says which file is the disk's image
 * (`disk relocate`, Engine.relocateDisk); its snapshots stay valid either way, since they hold
 * the guest's blocks by content, not anything of the file.
 */
import { BlocksnapError } from '../errors';
import type { DiskRecord } from '../catalog/records';
import { checkFormatKept, detectFormat } from './image-access';
import { resolveExistingImage } from './paths';
import { checkRegistrantImage, registrantAccess } from './registrant-access';
import type { UserAccess } from './user-access';
import type { FileIdentity } from '../native';

/**
 * The disk's checked real path, once its paths still lead to it, the user who registered it may
 * still read and write it (checkRegistrantImage), and its format is kept (checkFormatKept). With
 * `user`, the job's rights of that user (registrantAccess), the image decided on stays held by it
 * for the job's opens (UserAccess.identity).
 */
export function checkDiskPath(disk: DiskRecord, roots: string[], user?: UserAccess): string {
  const real = existingImage(disk, roots);
  if (real !== disk.path) throw imageMoved(disk, disk.path, real);
  if (disk.givenPath !== undefined) checkGivenPath(disk, disk.givenPath, roots);
  const own = user === undefined ? registrantAccess(disk) : undefined;
  const who = user ?? own;
  try {
    checkRegistrantImage(disk, real, who);
    checkFormatKept(disk, real, who?.identity(real));
  } finally {
    own?.release();
  }
  return real;
}

/** The real path of the disk's image; a missing one is told with the way out for an image moved without a link left behind. */
function existingImage(disk: DiskRecord, roots: string[]): string {
  try {
    return resolveExistingImage(disk.path, roots);
  } catch (err) {
    if (!(err instanceof BlocksnapError) || err.code !== 'ImageNotFound') throw err;
    throw new BlocksnapError('ImageNotFound',
      `${err.message}; if disk ${disk.name}'s image was moved, point the disk at it (blocksnap disk relocate ${disk.name} PATH; its snapshots stay)`,
      { ...err.details, diskId: disk.id });
  }
}

/**
 * A given name that is gone no longer names another file, and the image is still where it was:
 * nothing to refuse. One that now leads out of the roots is told without where it leads, as
 * every path outside them is (docs/design.md, image roots).
 */
function checkGivenPath(disk: DiskRecord, given: string, roots: string[]): void {
  let now: string;
  try {
    now = resolveExistingImage(given, roots);
  } catch (err) {
    if (err instanceof BlocksnapError && err.code === 'ImageNotFound') return;
    if (err instanceof BlocksnapError && err.code === 'PathNotAllowed') {
      throw new BlocksnapError('PathNotAllowed',
        `${given}, the path disk ${disk.name} was registered by, no longer leads to its image ${disk.path} but out of the image roots; ` +
        `point it back at ${disk.path}, or point the disk at the image it should read (blocksnap disk relocate ${disk.name} PATH; its snapshots stay)`,
        { path: given, diskId: disk.id });
    }
    throw err;
  }
  if (now !== disk.path) throw imageMoved(disk, given, now);
}

function imageMoved(disk: DiskRecord, path: string, now: string): BlocksnapError {
  const given = path === disk.path ? '' : `, the path disk ${disk.name} was registered by, and which led to ${disk.path},`;
  return new BlocksnapError('PathNotAllowed',
    `${path}${given} now resolves to ${now}, another file. If the disk's image is now ${now} (a storage move, an external snapshot, ` +
    `a retargeted link), point the disk at it: blocksnap disk relocate ${disk.name} ${path} (its snapshots stay); ` +
    (path === disk.path ? `otherwise put the image back at ${path}` : `otherwise point ${path} back at ${disk.path}`),
    { path, realPath: now, diskId: disk.id });
}

/**
 * Refuses (NotAnImage) to point `disk` at the image `real` whose format is not the disk's: the
 * next snapshot would read a qcow2 file's bytes as a raw disk, or fail on a raw one as qcow2. A disk
 * given as raw stays raw whatever its image starts with, as at every job (checkFormatKept).
 */
export function checkRelocatedFormat(disk: DiskRecord, real: string, expected?: FileIdentity): void {
  const found = detectFormat(real, expected);
  if (found === disk.format || (disk.format === 'raw' && disk.formatSource === 'given')) return;
  throw new BlocksnapError('NotAnImage',
    `${real} is a ${found} image, and disk ${disk.name} is ${disk.format}: relocate keeps a disk's format. Convert the image ` +
    `(qemu-img convert -f ${found} -O ${disk.format}) and relocate the disk to the result, or register ${real} as a new disk`,
    { path: real, diskId: disk.id, format: disk.format, found });
}
