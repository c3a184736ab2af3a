/**
 * Files a job creates (a clone, a flattened disk, a restored image, a stream file) appear under their name only once
 * complete.
 *
 * The job writes `.blocksnap-<jobId>.partial` in the target's directory (same directory: same
 * filesystem and same image root, so publishing is a link, never a copy), then links it to the
 * target name and unlinks the partial name. link(2) fails when the target exists, so a file that
 * appeared meanwhile is never overwritten, which rename(2) would do. A daemon killed mid-job
 * leaves only the partial name, which the next start removes (it is derived from the job id and
 * the target kept in the job record, so recovery never has to guess what is ours). Without
 * this, a half-written clone under the name an operator asked for looks like a finished one.
 */
import { link, rename, lstat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BlocksnapError } from '../errors';
import { fsyncDir } from '../store/block-io';
import { unlinkIfPresent } from '../store/block-store';

export function partialPath(target: string, jobId: string): string {
  return join(dirname(target), `.blocksnap-${jobId}.partial`);
}

/** Runs `write` against the partial name of `target`, then publishes it; a failure leaves neither name. */
export async function writePartial<T>(target: string, jobId: string, write: (partial: string) => Promise<T>): Promise<T> {
  const partial = partialPath(target, jobId);
  try {
    const r = await write(partial);
    await publishPartial(partial, target);
    return r;
  } catch (err) {
    await removePartial(partial).catch(() => false);
    throw err;
  }
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

/** Gives the finished `partial` its `target` name, durably; FileExists when the name is taken. */
export async function publishPartial(partial: string, target: string): Promise<void> {
  try {
    await link(partial, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      await removePartial(partial);
      throw new BlocksnapError('FileExists', `${target} appeared while the job ran; blocksnap never overwrites a file (the result was discarded)`, { path: target });
    }
    // Filesystems without hard links: rename, after checking the name is still free (a race
    // with another writer remains possible there, and only there).
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    if (await exists(target)) {
      await removePartial(partial);
      throw new BlocksnapError('FileExists', `${target} appeared while the job ran; blocksnap never overwrites a file (the result was discarded)`, { path: target });
    }
    await rename(partial, target);
    await fsyncDir(dirname(target));
    return;
  }
  await unlink(partial);
  await fsyncDir(dirname(target));
}

/** Removes a partial file; one that is already gone is fine. */
export const removePartial = unlinkIfPresent;

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
