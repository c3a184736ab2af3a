/** Helpers the question scripts share: the standard image, and the peer rows of a backup. */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context';
import { GiB, MiB, blocks, dataBytes, stripedLayout, writeImage, type Extent } from './images';
import { since, type Measured, type Sample } from './measure';
import type { BenchDaemon } from './daemon';
import type { SectionBuilder } from './report';
import { diskUsage } from './system';
import type { Compression } from './peers';

export const RSS_LIMIT = 256 * MiB;

/**
 * The RSS target, an absolute limit stated for the question's full size: the verdict names the
 * size it was measured at, since a run at a smaller --scale does not show it for the stated one.
 */
export function rssTarget(s: SectionBuilder, peak: number, measuredAt: string): void {
  s.target(`daemon peak RSS (${measuredAt})`, '< 256 MiB', mibText(peak), peak > 0 ? peak < RSS_LIMIT : null);
}

/** The size of an image as a target names it. */
export const sizeText = (bytes: number): string => (bytes >= GiB ? `${+(bytes / GiB).toFixed(2)} GiB image` : `${+(bytes / MiB).toFixed(0)} MiB image`);

/** How a restic row names its compression. */
export const resticCompression = (c: Compression): string => (c === 'none' ? 'compression off' : 'compression default auto, zstd');

export interface StandardImage {
  path: string;
  root: string;
  size: number;
  extents: Extent[];
  data: number;
}

/** The 4 GiB image of the full/incremental/rollback questions (3 GiB data, 1 GiB holes), scaled. */
export function standardImage(ctx: BenchContext, name = 'standard.img'): StandardImage {
  const root = join(ctx.scratch, 'images');
  mkdirSync(root, { recursive: true });
  const size = blocks(4 * GiB * ctx.scale, 16 * MiB);
  const extents = stripedLayout(size);
  const path = join(root, name);
  if (!existsSync(path)) {
    ctx.log(`generating ${name}: ${(size / GiB).toFixed(2)} GiB, ${(dataBytes(extents) / GiB).toFixed(2)} GiB data`);
    writeImage(path, size, extents, name);
  }
  return { path, root, size, extents, data: dataBytes(extents) };
}

/** Times one daemon call, with the daemon's peak RSS over it. */
export async function timedCall<T>(d: BenchDaemon, fn: () => Promise<T>): Promise<{ sample: Sample; value: T }> {
  d.resetPeak();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { sample: { seconds: since(t0), peakRssBytes: d.peakRss() }, value };
}

/** A row's figure, or `failed: …` when the tool failed (a peer's failure must not end the run). */
export async function tryMeasure(s: SectionBuilder, c: string, tool: string, m: () => Promise<Measured>): Promise<Measured | null> {
  try {
    return await m();
  } catch (err) {
    s.missing(c, tool, `failed: ${(err as Error).message.split('\n')[0]!.slice(0, 160)}`);
    return null;
  }
}

/** Store growth of a daemon's data dir around `fn`. */
export async function growth<T>(d: BenchDaemon, fn: () => Promise<T>): Promise<{ value: T; bytes: number }> {
  const before = diskUsage(d.dataDir);
  const value = await fn();
  return { value, bytes: diskUsage(d.dataDir) - before };
}


export const ratioText = (r: number | null | undefined): string => (r === null || r === undefined ? 'n/a' : `${r.toFixed(2)}×`);
export const mibText = (b: number | null | undefined): string => (b === null || b === undefined ? 'n/a' : `${(b / MiB).toFixed(1)} MiB`);
