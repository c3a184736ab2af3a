/**
 * Reading and writing single block files from TypeScript, for the jobs that move blocks between
 * the store and somewhere else one block at a time (replication, streams), where the data
 * arrives from or leaves for the network, not an image. Same format and the same durability as
 * the native writer (native/core/block_writer.cc): header + payload written to `tmp/`, fsynced,
 * renamed into place (over a file already there only where that file is damage), fan-out
 * directory fsynced, and the store directory fsynced once per job before its commit
 * (syncStoreEntries). Every read checks the header; readBlock also checks the SHA-256 of the
 * payload, so a block leaves the store only if it is right. readBlockUnhashed leaves that check to
 * a receiver that makes it anyway (an S3 PUT signed with the digest as its payload hash: see
 * replication.ts).
 */
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BlocksnapError } from '../errors';
import { BLOCK_FORMAT_VERSION, BLOCK_HEADER_SIZE, BLOCK_MAGIC, DIGEST_SIZE, TMP_DIR, blockPath } from './format';
import { reportStoreDamage } from './damage-reports';
import { writevFully } from '../write-fully';

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * SHA-256 on libuv's thread pool (WebCrypto's digest is asynchronous in Node), so that verifying
 * several 4 MiB blocks at once uses several cores and never stalls the daemon's event loop.
 */
export async function sha256Async(data: Buffer): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data));
}

export function encodeHeader(digest: Buffer, rawLength: number): Buffer {
  const h = Buffer.alloc(BLOCK_HEADER_SIZE);
  h.write(BLOCK_MAGIC, 0, 'latin1');
  h.writeUInt16LE(BLOCK_FORMAT_VERSION, 8);
  h.writeUInt16LE(0, 10);
  h.writeUInt32LE(BLOCK_HEADER_SIZE, 12);
  h.writeBigUInt64LE(BigInt(rawLength), 16);
  h.writeBigUInt64LE(BigInt(rawLength), 24);
  digest.copy(h, 32, 0, DIGEST_SIZE);
  return h;
}

/** The raw length of the block file with this digest, or null when there is none (or it is not a regular file). */
export async function presentBlockLength(storeDir: string, digestHex: string): Promise<number | null> {
  const st = await lstatOrNull(blockPath(storeDir, digestHex));
  return st?.isFile() ? st.size - BLOCK_HEADER_SIZE : null;
}

/** What findBlock found. */
export type FoundBlock =
  | { kind: 'present' | 'absent' }
  | { kind: 'otherLength'; length: number }
  | { kind: 'damaged'; path: string; size: number | null; error: BlocksnapError };

/**
 * What the store holds under a digest that a map puts where a block of `length` bytes goes:
 * - `present`: a regular file of the size such a block takes (its content is checked when read);
 * - `absent`: no file;
 * - `otherLength`: an intact block of another length, which the digest proves is the block's
 *   true length: the map is wrong, not the store;
 * - `damaged`: anything else (a truncated or overwritten file, a symlink), recorded for repair.
 * Only a file of the wrong size is read, to tell the last two apart: a rare path.
 */
export async function findBlock(storeDir: string, digestHex: string, length: number): Promise<FoundBlock> {
  const path = blockPath(storeDir, digestHex);
  const st = await lstatOrNull(path);
  if (st === null) return { kind: 'absent' };
  if (st.isFile() && st.size === BLOCK_HEADER_SIZE + length) return { kind: 'present' };
  try {
    return { kind: 'otherLength', length: (await readBlock(storeDir, digestHex)).length };
  } catch (err) {
    if (!(err instanceof BlocksnapError)) throw err;
    if (err.code === 'BlockMissing') return { kind: 'absent' }; // removed since the lstat
    if (err.code !== 'BlockCorrupt' && err.code !== 'DigestMismatch') throw err;
    return { kind: 'damaged', path, size: st.isFile() ? st.size : null, error: err };
  }
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    // lstat: a symlink in a block's place is damage, even where it leads to a right-sized file.
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Reads one block's raw bytes, verified: BlockMissing, BlockCorrupt or DigestMismatch otherwise. */
export async function readBlock(storeDir: string, digestHex: string): Promise<Buffer> {
  const data = await readBlockUnhashed(storeDir, digestHex);
  if ((await sha256Async(data)).toString('hex') !== digestHex) {
    throw damaged(new BlocksnapError('DigestMismatch', `block ${digestHex} does not match its digest: the store is corrupt`,
      { digest: digestHex, path: blockPath(storeDir, digestHex) }));
  }
  return data;
}

/**
 * Reads one block's raw bytes with its header and length checked (BlockMissing, BlockCorrupt) but
 * not its SHA-256: only for a caller whose receiver checks the bytes against the digest itself.
 * The file is read into `into` when it is large enough (the result is a view of it), so that a
 * job moving many blocks reuses a few buffers instead of leaving 4 MiB per block to the GC.
 */
export async function readBlockUnhashed(storeDir: string, digestHex: string, into?: Buffer): Promise<Buffer> {
  const path = blockPath(storeDir, digestHex);
  const notRegular = (): BlocksnapError => damaged(new BlocksnapError('BlockCorrupt', `block file ${path} is not a regular file`, { digest: digestHex, path }));
  let file;
  try {
    // O_NONBLOCK: a FIFO in a block's place would block the open until some writer came, holding
    // a thread of the pool that neither a cancel nor SIGTERM reaches.
    file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw damaged(new BlocksnapError('BlockMissing', `block ${digestHex} is missing from the store`, { digest: digestHex, path }));
    if ((code === 'ELOOP' || code === 'ENXIO') && await notRegularFile(path)) throw notRegular();
    throw err;
  }
  try {
    const st = await file.stat();
    if (!st.isFile()) throw notRegular();
    const { size } = st;
    if (size < BLOCK_HEADER_SIZE) throw damaged(new BlocksnapError('BlockCorrupt', `block file ${path} is shorter than its header`, { digest: digestHex, path }));
    const buf = into !== undefined && into.length >= size ? into : Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await file.read(buf, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const h = buf.subarray(0, BLOCK_HEADER_SIZE);
    const payload = Number(h.readBigUInt64LE(16));
    const raw = Number(h.readBigUInt64LE(24));
    if (h.toString('latin1', 0, 8) !== BLOCK_MAGIC || h.readUInt16LE(8) !== BLOCK_FORMAT_VERSION || h.readUInt16LE(10) !== 0
      || h.readUInt32LE(12) !== BLOCK_HEADER_SIZE || payload !== raw || got !== BLOCK_HEADER_SIZE + payload) {
      throw damaged(new BlocksnapError('BlockCorrupt', `block file ${path} has a bad header or length`, { digest: digestHex, path }));
    }
    return buf.subarray(BLOCK_HEADER_SIZE, got);
  } finally {
    await file.close();
  }
}

/** ELOOP also means too many symlinks on the way to the last component: ask what is there. */
async function notRegularFile(path: string): Promise<boolean> {
  try {
    return !(await lstat(path)).isFile();
  } catch {
    return false;
  }
}

/** A damaged or missing block file found here is recorded for repair too (damage-reports.ts). */
function damaged(e: BlocksnapError): BlocksnapError {
  reportStoreDamage(e);
  return e;
}

/** fsync(2) of a directory: makes the names created or removed in it durable. */
export async function fsyncDir(path: string): Promise<void> {
  const d = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/**
 * Run by a job before it commits a snapshot of blocks it wrote (writeBlock) or found present: makes
 * durable the directory entries a power cut must not take from it. `presentHex`, blocks found
 * already present: another job may have just renamed one into place and not yet fsynced its fan-out
 * directory. Blocks a committed snapshot references are durable already (their writer synced
 * before that commit); callers pass only the others. Each fan-out directory once, a few at a time,
 * and the store directory once, for the entries of fan-out directories, whoever made them: one
 * another job made may not be durable yet (that job may yet fail before its own sync).
 */
export async function syncStoreEntries(storeDir: string, presentHex: Iterable<string>): Promise<void> {
  const dirs = [...new Set([...presentHex].map((hex) => dirname(blockPath(storeDir, hex)))), storeDir];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < dirs.length) await fsyncDir(dirs[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(8, dirs.length) }, worker));
}

/** What writeBlock did: wrote a new file, wrote over a damaged one (or in a listed missing one's place), or found the block present. */
export type BlockWrite = 'stored' | 'repaired' | 'present';

/**
 * Stores `data` as the block `digestHex` after checking that the digest is right: file fsynced,
 * renamed into place, fan-out directory fsynced, and the store directory where this call created
 * the fan-out directory; one another job made is left to the job's syncStoreEntries. A regular
 * file of the right size already there is left alone: its content is not read (hashing every
 * present block would cost dedup its point: docs/design.md, "Damaged blocks"). Any other file
 * under the name, a wrong-sized one or a symlink, can only be damage, as the native writer judges
 * it: it is recorded, and the fresh file is renamed over it. So is a file that keeps its size when
 * `repair` says the digest is listed as damaged (catalog/damaged-blocks.ts).
 */
export async function writeBlock(storeDir: string, digestHex: string, data: Buffer, o: { repair?: boolean } = {}): Promise<BlockWrite> {
  const digest = await sha256Async(data);
  if (digest.toString('hex') !== digestHex) throw new BlocksnapError('Internal', `refusing to store data under digest ${digestHex}: it hashes to ${digest.toString('hex')}`);
  const final = blockPath(storeDir, digestHex);
  const size = BLOCK_HEADER_SIZE + data.length;
  let repair = o.repair === true;
  if (!repair) {
    const st = await lstatOrNull(final);
    if (st?.isFile() && st.size === size) return 'present';
    if (st !== null) {
      damaged(new BlocksnapError('BlockCorrupt', st.isFile()
        ? `block file ${final} has ${st.size} bytes; block ${digestHex} takes ${size}`
        : `block file ${final} is not a regular file`, { digest: digestHex, path: final }));
      repair = true;
    }
  }
  const fanout = dirname(final);
  try {
    await mkdir(fanout, { mode: 0o700 });
    await fsyncDir(storeDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const tmp = join(storeDir, TMP_DIR, `${digestHex}.${randomBytes(6).toString('hex')}`);
  const file = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  try {
    await writevFully(file, [encodeHeader(digest, data.length), data], 0, tmp);
    await file.sync();
  } catch (err) {
    await file.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await file.close();
  if (!repair) { // another writer may have published it meanwhile
    const st = await lstatOrNull(final);
    if (st?.isFile() && st.size === size) {
      await unlink(tmp);
      return 'present';
    }
  }
  try {
    await renameIntoPlace(tmp, final, digestHex);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(fanout);
  return repair ? 'repaired' : 'stored';
}

/**
 * rename(2) of a finished block file to its name: atomic, so a repair replaces a damaged file
 * whole, and it replaces a symlink or a FIFO there itself, never following it. Only a directory
 * refuses a file: an empty one is removed first; one with anything in it is not ours to delete.
 */
async function renameIntoPlace(tmp: string, final: string, digestHex: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(tmp, final);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EISDIR' || attempt >= 2) throw err;
    }
    try {
      await rmdir(final);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      throw new BlocksnapError('BlockCorrupt',
        `block ${digestHex} cannot be written again: ${final} is a directory that is not empty; remove it by hand, then try again`,
        { digest: digestHex, path: final });
    }
  }
}
