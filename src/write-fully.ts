/**
 * Positioned writes that go on until every byte is written. A write(2) may write less than asked
 * without failing: near a full filesystem it writes what fits and returns the count, and only
 * the next call fails, with ENOSPC. Taking the short count for the failure would report a full
 * disk as a failing one (IOError instead of NoSpace); writing on gets the real errno.
 */
import { BlocksnapError } from './errors';

/** A file with positioned gathered writes (a FileHandle has them). */
export interface GatheringFile {
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
}

/** Writes `buffers` at `position` whole; `what` names the file for the one error of its own (a write that makes no progress). */
export async function writevFully(file: GatheringFile, buffers: Buffer[], position: number, what: string): Promise<void> {
  let rest = buffers.filter((b) => b.length > 0);
  let at = position;
  while (rest.length > 0) {
    const { bytesWritten } = await named(file.writev(rest, at), what);
    if (bytesWritten <= 0) throw new BlocksnapError('IOError', `a write to ${what} wrote nothing and gave no error`);
    at += bytesWritten;
    rest = after(rest, bytesWritten);
  }
}

/** A file with positioned writes that return the count written. */
export interface PositionalFile {
  write(data: Buffer, position: number): Promise<number>;
}

/** write() of `data` at `position` until whole, as writevFully. */
export async function writeFully(file: PositionalFile, data: Buffer, position: number, what: string): Promise<void> {
  for (let done = 0; done < data.length;) {
    const n = await named(file.write(done === 0 ? data : data.subarray(done), position + done), what);
    if (n <= 0) throw new BlocksnapError('IOError', `a write to ${what} wrote nothing and gave no error`);
    done += n;
  }
}

/**
 * A write's errno error names no file ("ENOSPC: no space left on device, write"): the file is
 * added as Node adds it to the errors of calls given a path, code and errno kept.
 */
async function named<T>(write: Promise<T>, what: string): Promise<T> {
  try {
    return await write;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code === 'string' && typeof e.message === 'string' && !e.message.includes(what)) e.message = `${e.message} '${what}'`;
    throw err;
  }
}

/** What is left of `buffers` once their first `n` bytes are written. */
function after(buffers: Buffer[], n: number): Buffer[] {
  let skip = n;
  let i = 0;
  while (i < buffers.length && skip >= buffers[i]!.length) skip -= buffers[i++]!.length;
  if (i === buffers.length) return [];
  return [buffers[i]!.subarray(skip), ...buffers.slice(i + 1)];
}
