/**
 * One verified block read through the addon (native/workers/read_block_worker.cc): the file is
 * read and its SHA-256 checked on the libuv thread pool, so that a server answering reads never
 * hashes on the JS thread. Same checks and errors as the store's TypeScript reader
 * (BlockMissing, BlockCorrupt, DigestMismatch, IOError), with the digest in the details.
 */
import { BlocksnapError } from '../errors';
import { DIGEST_SIZE } from '../store/format';
import { fromNative, nativeAddon } from './index';

type ReadBlockFn = (storeDir: string, digest: Buffer, expectedLength?: number) => Promise<Buffer>;

/** The raw bytes of block `digest`; `expectedLength`, when given, must be its raw length. */
export async function readBlockVerified(storeDir: string, digest: Buffer, expectedLength?: number): Promise<Buffer> {
  if (typeof storeDir !== 'string' || storeDir.length === 0) throw new BlocksnapError('InvalidArgument', 'storeDir must be a non-empty string');
  if (!Buffer.isBuffer(digest) || digest.length !== DIGEST_SIZE) throw new BlocksnapError('InvalidArgument', 'digest must be a Buffer of 32 bytes');
  const fn = (nativeAddon() as unknown as { readBlock: ReadBlockFn }).readBlock;
  try {
    return await fn(storeDir, digest, expectedLength);
  } catch (err) {
    throw fromNative(err);
  }
}
