/** Engines for the policy, group and quota tests: small blocks, a configurable quota, tiny images. */
import type { Test } from 'tap';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import type { SnapshotQuota } from '../../src/engine/quotas';
import { fillBlock, makeImage } from './images';

export const KiB64 = 64 * 1024;

export interface ModelFixture { engine: Engine; dataDir: string; images: string }

/** `dir` reuses a test directory made earlier (t.testdir() would empty it). */
export async function openSmallEngine(t: Test, o: { snapshotQuota?: Partial<SnapshotQuota>; dir?: string; now?: () => Date; deleteBatch?: number } = {}): Promise<ModelFixture> {
  const dir = o.dir ?? t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: KiB64, threads: 1, ...(o.snapshotQuota ? { snapshotQuota: o.snapshotQuota } : {}), ...(o.now ? { now: o.now } : {}), ...(o.deleteBatch ? { deleteBatch: o.deleteBatch } : {}) });
  t.teardown(() => engine.close());
  return { engine, dataDir, images };
}

/** A registered image of `blocks` 64 KiB blocks, each filled from `${name}-${i}`. */
export async function smallDisk(f: ModelFixture, name: string, blocks = 4): Promise<{ id: string; path: string }> {
  const path = makeImage(join(f.images, `${name}.raw`), blocks * KiB64);
  for (let i = 0; i < blocks; i++) fillBlock(path, i, KiB64, `${name}-${i}`);
  const d = await f.engine.addDisk({ path, name });
  return { id: d.id, path };
}
