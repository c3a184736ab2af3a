/**
 * Files a job creates (a clone, a flattened disk, a restored image, a stream file) appear under their name only once
 * complete.
 *
 * The job creates its file in the target's directory (same directory: same filesystem and same
 * image root, so publishing is a link, never a copy) without a name (O_TMPFILE), writes it and
 * fsyncs it, then links it as `.blocksnap-<jobId>.partial`; publishing links that to the target
 * name and unlinks the partial name. A daemon killed while the file has no name leaves nothing
 * anywhere: the kernel frees a nameless file with its last descriptor. A named partial file
 * would outlive the crash, and where its directory was moved or renamed meanwhile, no start-up
 * would find it again: an image-sized file lost for good. So the partial name exists only for
 * the moment between the writer's link and the publish. link(2) fails when the target exists, so
 * a file that appeared meanwhile is never overwritten, which rename(2) would do.
 *
 * Where the filesystem has no O_TMPFILE (some FUSE and NFS), the file is created under the
 * partial name from the start (native `create_in`). For both, a daemon killed while a partial
 * name exists leaves it, and the next start removes it (the name is derived from the job id and
 * the target kept in the job record, so recovery never has to guess what is ours). Without this,
 * a half-written clone under the name an operator asked for looks like a finished one.
 *
 * The directory is opened once, when the job starts, without following a symlink anywhere in its
 * (checked, real) path, and held: the partial file is created in it, named, published in it and
 * removed from it through that descriptor. Whoever can write inside an image root may swap a
 * directory of the path for a symlink, rename it or delete it while the job runs; by path, the
 * link, the unlink or the cleanup would then act on another directory (outside the roots, or
 * leaving an image-sized partial file in the moved one forever). Before publishing, the path must
 * still lead to the held directory, so the result is never given a name where the client will
 * not find it.
 *
 * A file made for a client other than root or the daemon's user is given to that client (owner
 * and group) as soon as it is created, before it has any name: the name the client asked for
 * never leads to a file of the daemon's that the client could not read or remove.
 */
import { close, closeSync, fchownSync, fstatSync, fsync, ftruncate, write, writev } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { openImageDir, type FileOwner, type ImageDir } from '../native';
import { replacedAfterCheck } from './paths';
import type { UserAccess } from './user-access';

export function partialPath(target: string, jobId: string): string {
  return join(dirname(target), partialName(jobId));
}

function partialName(jobId: string): string {
  return `.blocksnap-${jobId}.partial`;
}

/** Where a job writes its partial file: a held directory and the name in it. */
export interface PartialAt {
  dir: ImageDir;
  /** For the native writers (`dirFd`): they create the file in this directory and name it once complete. */
  dirFd: number;
  name: string;
  /** For the native writers (`owner`): who the file is given to before it has a name; absent, the daemon's user. */
  owner?: FileOwner;
  /** For writers in TypeScript: creates the file in the held directory, nameless until `complete()`. */
  create(): PartialFile;
}

/** A file created in its held directory for a partial name, for positioned writes; its owner closes it. */
export interface PartialFile {
  truncate(length: number): Promise<void>;
  write(data: Buffer, position: number): Promise<number>;
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
  /** Once all is written: fsyncs the file, then gives it the partial name (before close: a nameless file closed is gone). */
  complete(): Promise<void>;
  close(): Promise<void>;
}

function partialFile(dir: ImageDir, name: string, owner: FileOwner | undefined): PartialFile {
  const fd = dir.createFile(name);
  if (owner !== undefined) {
    try {
      fchownSync(fd, owner.uid, owner.gid);
    } catch (err) {
      closeSync(fd);
      // Created under its name where there is no O_TMPFILE: not left behind as the daemon's.
      try {
        dir.unlink(name);
      } catch { /* the fchown's error says more */ }
      throw toBlocksnapError(err);
    }
  }
  return {
    truncate: (length) => promisify(ftruncate)(fd, length),
    write: async (data, position) => (await promisify(write)(fd, data, 0, data.length, position)).bytesWritten,
    writev: (buffers, position) => new Promise((resolve, reject) => {
      writev(fd, buffers, position, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten })));
    }),
    complete: async () => {
      await promisify(fsync)(fd);
      dir.linkFile(fd, name);
    },
    close: () => promisify(close)(fd),
  };
}

/**
 * Runs `write` against the partial name of `target`, then publishes it; a failure leaves neither
 * name. `write` must create the file in `at.dir` (the native writers' `dirFd`, or `at.create`),
 * never by the path, which is for messages, and give it the partial name once complete. `owner`:
 * who the file is given to (the writers pass `at.owner` on); absent, it stays the daemon's user's.
 */
export async function writePartial<T>(target: string, jobId: string, write: (partial: string, at: PartialAt) => Promise<T>, user?: UserAccess): Promise<T> {
  const dirPath = dirname(target);
  const owner = user?.owner;
  let dir: ImageDir;
  try {
    dir = openTargetDir(dirPath, target);
    // The directory the client's rights were decided on (newFileFor), held since: the one opened
    // now must be it, or another was renamed over it (or over one on its path) meanwhile.
    const decided = user?.identity(dirPath);
    if (decided !== undefined) {
      const st = fstatSync(dir.fd, { bigint: true });
      if (st.dev !== decided.dev || st.ino !== decided.ino) {
        dir.release();
        throw replacedAfterCheck(dirPath);
      }
    }
  } finally {
    user?.release();
  }
  const name = partialName(jobId);
  const partial = join(dirPath, name);
  try {
    const r = await write(partial, { dir, dirFd: dir.fd, name, ...(owner !== undefined ? { owner } : {}), create: () => partialFile(dir, name, owner) });
    publishIn(dir, name, target);
    return r;
  } catch (err) {
    try {
      dir.unlink(name);
    } catch { /* the error that stopped the job says more */ }
    throw aboutTarget(err, partial, target);
  } finally {
    dir.release();
  }
}

/**
 * A writer's error (ENOSPC, EMFILE, EIO…) names the path it wrote through: the partial name, which
 * the operator never saw (the file had no name at all where the filesystem has O_TMPFILE) and
 * which is gone by now either way. Told of the target instead, and that it was not created.
 */
function aboutTarget(err: unknown, partial: string, target: string): unknown {
  if (!(err instanceof Error) || !err.message.includes(partial)) return err;
  const e = toBlocksnapError(err);
  const details = e.details === undefined ? undefined : { ...e.details, ...(e.details.path === partial ? { path: target } : {}) };
  const told = new BlocksnapError(e.code, `${e.message.split(partial).join(target)}; ${target} was not created`, details);
  told.stack = e.stack;
  return told;
}

/**
 * Removes what jobs interrupted by a crash left under their partial names. Only kinds that write
 * a file into an image directory have one; the name comes from the job record, never a listing.
 */
export async function removeInterruptedPartials(jobs: Array<{ id: string; kind: string; target: string | null }>): Promise<number> {
  let removed = 0;
  for (const j of jobs) {
    if (!FILE_JOB_KINDS.has(j.kind) || j.target === null || !j.target.startsWith('/')) continue;
    if (await removePartial(partialPath(j.target, j.id)).catch(() => false)) removed++;
  }
  return removed;
}

const FILE_JOB_KINDS = new Set(['clone', 'flatten', 'export', 'restore']);

/**
 * Gives the finished `partial` its `target` name, durably; FileExists when the name is taken.
 * For a writer that did not hold the directory: it is opened now (no symlink on the way).
 */
export async function publishPartial(partial: string, target: string): Promise<void> {
  const dir = openTargetDir(dirname(target), target);
  try {
    publishIn(dir, basename(partial), target);
  } finally {
    dir.release();
  }
}

/** Removes a partial file, never through a symlink in its path; one that is already gone is fine. */
export async function removePartial(partial: string): Promise<boolean> {
  let dir: ImageDir;
  try {
    dir = openImageDir(dirname(partial));
  } catch (err) {
    if (toBlocksnapError(err).code === 'ImageNotFound') return false;
    throw err;
  }
  try {
    return dir.unlink(basename(partial));
  } finally {
    dir.release();
  }
}

function openTargetDir(dirPath: string, target: string): ImageDir {
  try {
    return openImageDir(dirPath);
  } catch (err) {
    const e = toBlocksnapError(err);
    if (e.code === 'ImageNotFound') throw new BlocksnapError('ImageNotFound', `directory ${dirPath} does not exist`, { path: target });
    throw e;
  }
}

function publishIn(dir: ImageDir, name: string, target: string): void {
  const gone = directoryGone(dir, target);
  if (gone) throw gone;
  const base = basename(target);
  try {
    dir.link(name, base);
  } catch (err) {
    const e = toBlocksnapError(err);
    if (e.code === 'FileExists') throw fileExists(target);
    // Filesystems without hard links: a rename that refuses to replace an existing name.
    const errno = e.details?.errno;
    if (errno !== 1 /* EPERM */ && errno !== 95 /* EOPNOTSUPP */) throw e;
    try {
      dir.rename(name, base);
    } catch (err2) {
      throw toBlocksnapError(err2).code === 'FileExists' ? fileExists(target) : err2;
    }
    dir.sync();
    return;
  }
  dir.unlink(name);
  dir.sync();
}

function fileExists(target: string): BlocksnapError {
  return new BlocksnapError('FileExists', `${target} appeared while the job ran; blocksnap never overwrites a file (the result was discarded)`, { path: target });
}

/**
 * Null while the target's directory path still leads, without a symlink, to the held directory;
 * otherwise why the result cannot be given its name there.
 */
function directoryGone(dir: ImageDir, target: string): BlocksnapError | null {
  const dirPath = dir.path;
  let now: ImageDir;
  try {
    now = openImageDir(dirPath);
  } catch (err) {
    const e = toBlocksnapError(err);
    if (e.code === 'ImageNotFound') {
      return new BlocksnapError('ImageNotFound', `directory ${dirPath} was removed or moved while the job ran; the result was discarded`, { path: target });
    }
    if (e.code === 'NotAnImage') {
      return new BlocksnapError('NotAnImage', `directory ${dirPath} was replaced by a symlink while the job ran (a symlink was swapped into the path after it was checked); the result was discarded`, { path: target });
    }
    return e;
  }
  try {
    const held = fstatSync(dir.fd);
    const current = fstatSync(now.fd);
    if (held.dev === current.dev && held.ino === current.ino && held.nlink > 0) return null;
    return new BlocksnapError('ImageNotFound', `directory ${dirPath} was replaced while the job ran; the result was discarded`, { path: target });
  } finally {
    now.release();
  }
}
