/**
 * The bench's images: generated, never downloaded, deterministic for a seed. Data comes from
 * AES-128-CTR (fast, and no two 4 MiB blocks or 4 KiB pages repeat, so neither blocksnap nor a
 * peer gets to deduplicate what a real disk would not let it). "Compressible" pages keep 1 KiB of
 * that noise and fill the other 3 KiB with text, which compresses about 3:1 like logs and
 * binaries do, while still never repeating.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, fsyncSync, ftruncateSync, openSync, writeSync } from 'node:fs';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const BLOCK = 4 * MiB;
const PAGE = 4 * KiB;
const CHUNK = 16 * MiB;

export type DataKind = 'random' | 'compressible';

export interface Extent {
  offset: number;
  length: number;
  kind: DataKind;
}

const TEXT = Buffer.from(
  'Nov 22 00:00:00 host kernel: EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.\n'.repeat(40),
);

/** An endless stream of bytes for one seed. */
export class DataSource {
  private readonly cipher;
  private readonly zeros = Buffer.alloc(CHUNK);

  constructor(seed: string) {
    const key = createHash('sha256').update(seed).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  }

  /** `length` fresh bytes of the given kind. */
  next(length: number, kind: DataKind): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let off = 0; off < length; off += CHUNK) {
      const n = Math.min(CHUNK, length - off);
      this.cipher.update(this.zeros.subarray(0, n)).copy(out, off);
    }
    if (kind === 'compressible') {
      for (let p = 0; p < length; p += PAGE) TEXT.copy(out, p + KiB, 0, Math.max(0, Math.min(PAGE - KiB, length - p - KiB)));
    }
    return out;
  }
}

/** A deterministic PRNG for positions (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Creates `path` as a sparse file of `size` bytes holding `extents`, durably written. */
export function writeImage(path: string, size: number, extents: Extent[], seed: string): void {
  const src = new DataSource(seed);
  const fd = openSync(path, 'w', 0o600);
  try {
    ftruncateSync(fd, size);
    for (const e of extents) {
      for (let off = 0; off < e.length; off += CHUNK) {
        const n = Math.min(CHUNK, e.length - off);
        writeAll(fd, src.next(n, e.kind), e.offset + off);
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The full-snapshot image: of every four stripes three hold data and one is a hole (¾ data, ¼
 * holes), and the data stripes alternate between random and compressible. Stripes are 64 MiB at
 * full size and shrink with the image down to one block.
 */
export function stripedLayout(size: number): Extent[] {
  const stripe = Math.max(BLOCK, Math.min(64 * MiB, Math.floor(size / 64 / BLOCK) * BLOCK));
  const out: Extent[] = [];
  let dataStripes = 0;
  for (let i = 0, off = 0; off < size; i++, off += stripe) {
    if (i % 4 === 3) continue;
    out.push({ offset: off, length: Math.min(stripe, size - off), kind: dataStripes++ % 2 === 0 ? 'random' : 'compressible' });
  }
  return out;
}

/** `count` data extents of `length` bytes spread evenly over `size` bytes of address space. */
export function spreadLayout(size: number, count: number, length: number): Extent[] {
  const gap = Math.floor(size / count / BLOCK) * BLOCK;
  return Array.from({ length: count }, (_, i) => ({ offset: i * gap, length, kind: i % 2 === 0 ? 'random' : 'compressible' }));
}

export function dataBytes(extents: Extent[]): number {
  return extents.reduce((a, e) => a + e.length, 0);
}

/** Rounds to whole blocks, at least `min` bytes. */
export function blocks(bytes: number, min = BLOCK): number {
  return Math.max(min, Math.round(bytes / BLOCK) * BLOCK);
}

export interface Change {
  /** Indexes of the 4 MiB blocks that now differ. */
  blocks: Set<number>;
  /** Bytes the "guest" wrote. */
  bytesWritten: number;
}

/** The sequential run of a clustered change: 64 MiB at full size, whole blocks, at least one. */
export function sequentialChangeBytes(scale: number): number {
  return Math.max(BLOCK, Math.round((64 * MiB * scale) / BLOCK) * BLOCK);
}

export interface PlannedWrite { offset: number; length: number }

/**
 * How guests write: 1% of the blocks get a few 4 KiB writes each, plus one sequential run
 * (sequentialChangeBytes) somewhere in the image. The plan alone, so that the same change can be
 * written to a file or through an NBD export.
 */
export function clusteredWrites(size: number, seed: number, sequentialBytes: number): PlannedWrite[] {
  const r = rng(seed);
  const nblocks = Math.ceil(size / BLOCK);
  const touched = Math.max(1, Math.round(nblocks * 0.01));
  const out: PlannedWrite[] = [];
  const picked = new Set<number>();
  while (picked.size < Math.min(touched, nblocks)) picked.add(Math.floor(r() * nblocks));
  for (const b of picked) {
    for (let w = 0; w < 4; w++) {
      const offset = b * BLOCK + Math.floor(r() * (BLOCK / PAGE)) * PAGE;
      if (offset + PAGE <= size) out.push({ offset, length: PAGE });
    }
  }
  const seq = Math.min(sequentialBytes, size);
  out.push({ offset: Math.floor(r() * ((size - seq) / BLOCK + 1)) * BLOCK, length: seq });
  return out;
}

/** clusteredWrites applied to a file with random data. */
export function clusteredChange(path: string, size: number, seed: number, sequentialBytes: number): Change {
  const src = new DataSource(`clustered-${seed}`);
  const change: Change = { blocks: new Set(), bytesWritten: 0 };
  const fd = openSync(path, 'r+');
  try {
    for (const w of clusteredWrites(size, seed, sequentialBytes)) {
      writeAll(fd, src.next(w.length, 'random'), w.offset);
      change.bytesWritten += w.length;
      for (let b = Math.floor(w.offset / BLOCK); b * BLOCK < w.offset + w.length; b++) change.blocks.add(b);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return change;
}

/** The worst case of a 4 MiB granularity: `writes` 4 KiB writes uniform over the image. */
export function scatteredChange(path: string, size: number, seed: number, writes: number): Change {
  const r = rng(seed);
  const src = new DataSource(`scattered-${seed}`);
  const change: Change = { blocks: new Set(), bytesWritten: 0 };
  const pages = Math.floor(size / PAGE);
  const fd = openSync(path, 'r+');
  try {
    for (let i = 0; i < writes; i++) {
      const off = Math.floor(r() * pages) * PAGE;
      writeAll(fd, src.next(PAGE, 'random'), off);
      change.bytesWritten += PAGE;
      change.blocks.add(Math.floor(off / BLOCK));
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return change;
}

function writeAll(fd: number, buf: Buffer, position: number): void {
  for (let done = 0; done < buf.length;) done += writeSync(fd, buf, done, buf.length - done, position + done);
}
