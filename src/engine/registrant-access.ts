/**
 * An image disk registered by a client that is neither root nor the daemon's user is read and
 * written afterwards with that client's rights, not only checked with them at `disk add`. The
 * file at the disk's path is whatever is there when a job opens it: the user can rewrite its qcow2
 * header to name another backing file, or rename another file over it in a directory it may
 * write, and write access to a directory gives no right to the files in it. So every job that
 * opens the image or its backing files checks them again, just before, with the rights recorded
 * at registration (DiskRecord.registeredBy): read and write on the image, read on each backing
 * file of the chain as it is now, search on every directory on the way. A job holds what was
 * decided on (UserAccess.release() when it ends) and opens only those files (FileIdentity), so
 * that a file renamed over the image between the check and the job's open is refused, not used.
 */
import { BlocksnapError } from '../errors';
import type { DiskRecord } from '../catalog/records';
import { imageFormatOf, inspectImage, type ImageFacts } from './image-access';
import { UserAccess } from './user-access';

/**
 * The rights of the user who registered `disk`, for one job, which releases them when it ends;
 * none (undefined) when root or the daemon's user registered it.
 */
export function registrantAccess(disk: DiskRecord): UserAccess | undefined {
  return disk.registeredBy === undefined ? undefined : new UserAccess(disk.registeredBy);
}

/**
 * `run` with the rights of the user who registered `disk` (registrantAccess), released once it
 * settles: for a job that checks the disk and opens its files within `run`.
 */
export async function asRegistrantOf<T>(disk: DiskRecord, run: (user: UserAccess | undefined) => Promise<T>): Promise<T> {
  const user = registrantAccess(disk);
  try {
    return await run(user);
  } finally {
    user?.release();
  }
}

/**
 * Refuses (NotAuthorized) unless the user who registered `disk` may read and write its image at
 * `real`. The image decided on is held by `user` (the job's, from registrantAccess) until it is
 * released; without one, by a UserAccess of its own, released before this returns (a check that
 * opens nothing after it).
 */
export function checkRegistrantImage(disk: DiskRecord, real: string, user?: UserAccess): void {
  const own = user === undefined ? registrantAccess(disk) : undefined;
  const who = user ?? own;
  try {
    if (who !== undefined) asRegistrant(disk, () => who.checkFile(real, disk.path, ['read', 'write']));
  } finally {
    own?.release();
  }
}

/**
 * inspectImage of the disk's image at `real`, each backing file checked for the user who
 * registered the disk before it is opened, and held by `user` as checkRegistrantImage holds the
 * image; without one, the image is checked here too and everything released before this returns.
 */
export function inspectDiskImage(disk: DiskRecord, real: string, roots: string[], user?: UserAccess): ImageFacts {
  const own = user === undefined ? registrantAccess(disk) : undefined;
  const who = user ?? own;
  try {
    if (own !== undefined) checkRegistrantImage(disk, real, own);
    return asRegistrant(disk, () => inspectImage(real, imageFormatOf(disk), roots, who));
  } finally {
    own?.release();
  }
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
