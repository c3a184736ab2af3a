/**
 * What the `.map` files of a copy-on-write disk's layers say was written: the bytes of the disk
 * whose granule is set in at least one layer (cow-format.ts). A TRIM or WRITE_ZEROES sets bits
 * over a hole in `.data`, so the space the data files take says nothing about whether a disk was
 * written; the bits do. Read from the files: a volume that is open may hold bits it has not
 * flushed yet.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { BlocksnapError } from '../errors';
import {
  COW_GRANULE_SIZE, COW_GRANULE_SIZE_OFFSET, COW_GRANULE_SIZE_V1, COW_MAP_HEADER_SIZE, COW_MAP_MAGIC, COW_VIRTUAL_SIZE_OFFSET, cowGranuleCount,
} from './cow-format';

const BITS = new Uint8Array(256).map((_, i) => { let n = 0; for (let v = i; v; v >>= 1) n += v & 1; return n; });

/** The bitmap of one map, at its own granule size. */
function readBitmap(mapPath: string, sizeBytes: number): { granuleSize: number; bits: Buffer } {
  const fd = openSync(mapPath, 'r');
  try {
    const header = Buffer.alloc(COW_MAP_HEADER_SIZE);
    readSync(fd, header, 0, header.length, 0);
    const granuleSize = header.readUInt32LE(COW_GRANULE_SIZE_OFFSET);
    if (header.toString('latin1', 0, COW_MAP_MAGIC.length) !== COW_MAP_MAGIC || (granuleSize !== COW_GRANULE_SIZE && granuleSize !== COW_GRANULE_SIZE_V1)
      || Number(header.readBigUInt64LE(COW_VIRTUAL_SIZE_OFFSET)) !== sizeBytes) {
      throw new BlocksnapError('ImageCorrupt', `${mapPath} is not a layer map of a ${sizeBytes}-byte disk`);
    }
    const bits = Buffer.alloc(Math.ceil(Math.ceil(sizeBytes / granuleSize) / 8));
    for (let at = 0; at < bits.length;) {
      const n = readSync(fd, bits, at, bits.length - at, COW_MAP_HEADER_SIZE + at);
      if (n === 0) throw new BlocksnapError('ImageCorrupt', `${mapPath} ends inside its bitmap`);
      at += n;
    }
    return { granuleSize, bits };
  } finally {
    closeSync(fd);
  }
}

/**
 * Bytes of a `sizeBytes` disk set in any of the maps, each counted once (at 4 KiB granules; a
 * version 1 map's 64 KiB granule counts as its 16). A missing map counts nothing (a layer being
 * removed); a malformed one throws ImageCorrupt.
 */
export function writtenBytes(mapPaths: string[], sizeBytes: number): number {
  const granules = cowGranuleCount(sizeBytes);
  const union = new Uint8Array(Math.ceil(granules / 8));
  for (const path of mapPaths) {
    let map: { granuleSize: number; bits: Buffer };
    try {
      map = readBitmap(path, sizeBytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if (map.granuleSize === COW_GRANULE_SIZE) {
      for (let i = 0; i < union.length; i++) union[i]! |= map.bits[i]!;
      continue;
    }
    // 64 KiB = 16 granules of 4 KiB: bit g of the map is bytes 2g and 2g+1 of the union.
    for (let i = 0; i < map.bits.length; i++) {
      const byte = map.bits[i]!;
      if (byte === 0) continue;
      for (let b = 0; b < 8; b++) {
        if (!(byte & (1 << b))) continue;
        const at = (i * 8 + b) * 2;
        if (at < union.length) union[at] = 0xff;
        if (at + 1 < union.length) union[at + 1] = 0xff;
      }
    }
  }
  // Bits past the last granule (a version 1 granule reaching beyond the disk) are not the disk's.
  if (granules % 8 !== 0) union[union.length - 1]! &= (1 << (granules % 8)) - 1;
  let set = 0;
  for (let i = 0; i < union.length; i++) set += BITS[union[i]!]!;
  let bytes = set * COW_GRANULE_SIZE;
  // The last granule may be short.
  const last = granules - 1;
  if (sizeBytes % COW_GRANULE_SIZE !== 0 && union[last >> 3]! & (1 << (last & 7))) bytes -= COW_GRANULE_SIZE - (sizeBytes % COW_GRANULE_SIZE);
  return bytes;
}
