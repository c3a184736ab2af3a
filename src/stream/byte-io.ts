/**
 * Where a snapshot stream's bytes go to and come from. The stream format (format.ts) is written
 * and read through these two interfaces only, so a stream file and a stream piped through the
 * daemon's socket (src/daemon/stream-channels.ts) are the same bytes by construction.
 */
import { writevFully, type GatheringFile } from '../write-fully';

/** Takes bytes in order; `write` resolves once the bytes are handed on (and may wait for room). */
export interface ByteSink {
  write(parts: Buffer[]): Promise<void>;
}

/** Gives bytes in order; `read` resolves with up to about `max` bytes, an empty buffer at the end. */
export interface ByteSource {
  read(max: number): Promise<Buffer>;
}

/** What fileSink needs of a file: positioned gathered writes (a FileHandle has them). */
export type WritableFile = GatheringFile;

/** Writes sequentially into a file from offset 0; `what` names it in errors. */
export function fileSink(file: WritableFile, what = 'the stream\'s file'): ByteSink {
  let offset = 0;
  return {
    async write(parts) {
      const total = parts.reduce((a, p) => a + p.length, 0);
      await writevFully(file, parts, offset, what);
      offset += total;
    },
  };
}

/** What fileSource needs of a file: its size and positioned reads (a FileHandle has them). */
export interface ReadableFile {
  stat(): Promise<{ size: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/**
 * Reads sequentially from a file from offset 0. A read asks for no more than the file has left
 * (its size taken once, at the first read), so a stream header claiming a huge map or block
 * cannot make the reader allocate beyond the file's own size.
 */
export function fileSource(file: ReadableFile): ByteSource {
  let offset = 0;
  let size: number | null = null;
  return {
    async read(max) {
      size ??= (await file.stat()).size;
      const want = Math.max(0, Math.min(max, size - offset));
      if (want === 0) return Buffer.alloc(0);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await file.read(buf, 0, want, offset);
      offset += bytesRead;
      return buf.subarray(0, bytesRead);
    },
  };
}
