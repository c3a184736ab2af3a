/**
 * An image disk registered by a client that is neither root nor the daemon's user is read and
 * written afterwards with that client's rights, not only checked with them at `disk add`. The
 * file at the disk's path is whatever is there when a job opens it: the user can rewrite its qcow2
 * header to name another backing file, or rename another file over it in a directory it may
 * write, and write access to a directory gives no right to the files in it. So every job that
 * opens the image or its backing files checks them again, just before, with the rights recorded
 * at registration (DiskRecord.registeredBy): read and write on the image, read on each backing
 * file of the chain as it is now, search on every directory on the way.
 */
import { BlocksnapError } from '../errors';
import type { DiskRecord } from '../catalog/records';
import { imageFormatOf, inspectImage, type ImageFacts } from './image-access';
import { UserAccess } from './user-access';

/** The rights of the user who registered `disk`; none (undefined) when root or the daemon's user did. */
export function registrantAccess(disk: DiskRecord): UserAccess | undefined {
  return disk.registeredBy === undefined ? undefined : new UserAccess(disk.registeredBy);
}

/** Refuses (NotAuthorized) unless the user who registered `disk` may read and write its image at `real`. */
export function checkRegistrantImage(disk: DiskRecord, real: string): void {
  const user = registrantAccess(disk);
  if (user !== undefined) asRegistrant(disk, () => user.checkFile(real, disk.path, ['read', 'write']));
}

/** inspectImage of the disk's image at `real`, each backing file checked for the user who registered the disk before it is opened. */
export function inspectDiskImage(disk: DiskRecord, real: string, roots: string[]): ImageFacts {
  return asRegistrant(disk, () => inspectImage(real, imageFormatOf(disk), roots, registrantAccess(disk)));
}

function asRegistrant<T>(disk: DiskRecord, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (!(err instanceof BlocksnapError) || err.code !== 'NotAuthorized' || disk.registeredBy === undefined) throw err;
    const uid = disk.registeredBy.uid;
    throw new BlocksnapError('NotAuthorized',
      `disk ${disk.name} was registered by uid ${uid}, and the daemon opens its image and backing files only as far as that user could: ${err.message}; ` +
      `root can take the disk over with blocksnap disk relocate ${disk.name} ${disk.path}`,
      { ...err.details, diskId: disk.id, registeredUid: uid });
  }
}
