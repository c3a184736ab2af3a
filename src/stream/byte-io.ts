/**
 * Where a snapshot stream's bytes go to and come from. The stream format (format.ts) is written
 * and read through these two interfaces only, so a stream file and a stream piped through the
 * daemon's socket (src/daemon/stream-channels.ts) are the same bytes by construction.
 */
import type { FileHandle } from 'node:fs/promises';
import { BlocksnapError } from '../errors';

/** Takes bytes in order; `write` resolves once the bytes are handed on (and may wait for room). */
export interface ByteSink {
  write(parts: Buffer[]): Promise<void>;
}

/** Gives bytes in order; `read` resolves with up to about `max` bytes, an empty buffer at the end. */
export interface ByteSource {
  read(max: number): Promise<Buffer>;
}

/** Writes sequentially into a file from offset 0. */
export function fileSink(file: FileHandle): ByteSink {
  let offset = 0;
  return {
    async write(parts) {
      const total = parts.reduce((a, p) => a + p.length, 0);
      const { bytesWritten } = await file.writev(parts, offset);
      if (bytesWritten !== total) throw new BlocksnapError('IOError', `short write of a stream (${bytesWritten} of ${total} bytes)`);
      offset += total;
    },
  };
}

/** Reads sequentially from a file from offset 0. */
export function fileSource(file: FileHandle): ByteSource {
  let offset = 0;
  return {
    async read(max) {
      const buf = Buffer.allocUnsafe(max);
      const { bytesRead } = await file.read(buf, 0, max, offset);
      offset += bytesRead;
      return buf.subarray(0, bytesRead);
    },
  };
}
