/**
 * What a full snapshot stream file holds, read with the daemon's own reader (src/stream/format.ts):
 * its header, map and end record checksums, each block record against its digest, and the image
 * content its map lays out from those records. A file cut off or written out of order fails here.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DIGEST_SIZE, isZeroDigest } from '../../src/store/format';
import { StreamReader } from '../../src/stream/format';

/** The SHA-256 of the image content the stream at `path` carries; throws when the file is not a whole, consistent full stream. */
export async function streamContentSha(path: string): Promise<string> {
  const bytes = readFileSync(path);
  let at = 0;
  const r = new StreamReader({ read: async (max) => { const out = bytes.subarray(at, at + max); at += out.length; return out; } });
  const { snapshot: s, base } = await r.preamble();
  if (base !== null) throw new Error(`${path} is an incremental stream (base ${base.id}); the torture exports full ones`);
  const map = await r.map(s.blockCount);
  const blocks = new Map<string, Buffer>();
  const counts = { blocks: 0, bytes: 0 };
  for (let rec = await r.next(s.blockSize, counts); rec !== null; rec = await r.next(s.blockSize, counts)) {
    const hex = Buffer.from(rec.digest).toString('hex');
    if (createHash('sha256').update(rec.data).digest('hex') !== hex) throw new Error(`${path} carries block ${hex} with other content`);
    blocks.set(hex, Buffer.from(rec.data));
    counts.blocks++;
    counts.bytes += rec.data.length;
  }
  const content = createHash('sha256');
  for (let i = 0; i < s.blockCount; i++) {
    const length = Math.min(s.blockSize, s.sizeBytes - i * s.blockSize);
    if (isZeroDigest(map, i * DIGEST_SIZE)) {
      content.update(Buffer.alloc(length));
      continue;
    }
    const hex = map.toString('hex', i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE);
    const data = blocks.get(hex);
    if (data === undefined) throw new Error(`${path} maps block ${i} to ${hex}, which it does not carry`);
    if (data.length !== length) throw new Error(`${path} maps block ${i} (${length} bytes) to ${hex}, which has ${data.length}`);
    content.update(data);
  }
  return content.digest('hex');
}
