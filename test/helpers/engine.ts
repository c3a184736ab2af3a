import type { Test } from 'tap';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Engine } from '../../src/engine';
import type { Job } from '../../src/engine/types';
import { fillBlock, makeImage } from './images';

export interface Fixture { engine: Engine; dataDir: string; images: string }

/** A real engine on a temp data dir, with an image root beside it; closed at teardown. */
export async function openEngine(t: Test, o: { blockSize?: number } = {}): Promise<Fixture> {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  const engine = await Engine.open({ dataDir, imageRoots: [images], ...(o.blockSize ? { blockSize: o.blockSize } : {}) });
  t.teardown(() => engine.close());
  return { engine, dataDir, images };
}

/** A second engine beside `a`'s, in `b/` (a data dir and an image root of its own): another host. */
export async function secondEngine(t: Test, a: Fixture, blockSize: number): Promise<Fixture> {
  const dir = join(dirname(a.dataDir), 'b');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  const dataDir = join(dir, 'data');
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize });
  t.teardown(() => engine.close());
  return { engine, dataDir, images };
}

/** The code and message a call (sync or async) was refused with, or code 'ok' when it was not. */
export async function refusal(p: () => unknown): Promise<{ code: string; message: string }> {
  try {
    await p();
  } catch (err) {
    return err as { code: string; message: string };
  }
  return { code: 'ok', message: '' };
}

/** Waits for a job and fails the test with the job's error if it did not succeed. */
export async function finished(engine: Engine, job: Job): Promise<Job> {
  const done = await engine.waitJob(job.id);
  if (done.state !== 'succeeded') throw new Error(`job ${job.kind} ${done.state}: ${done.error?.code} ${done.error?.message}`);
  return done;
}

export async function snapshot(engine: Engine, disk: string, name?: string): Promise<import('../../src/engine/types').Snapshot> {
  const job = await finished(engine, engine.startSnapshot(disk, name === undefined ? {} : { name }));
  return job.result as import('../../src/engine/types').Snapshot;
}

/**
 * openEngine with one raw image disk `disk` of `blocks` blocks, the first `filled` of them block
 * i holding pattern(`<disk>-i`), snapshotted as `snapshot`.
 */
export async function engineWithSnapshot(t: Test, o: { blockSize: number; blocks: number; filled: number; disk: string; snapshot: string }) {
  const f = await openEngine(t, { blockSize: o.blockSize });
  const img = makeImage(join(f.images, `${o.disk}.raw`), o.blocks * o.blockSize);
  for (let i = 0; i < o.filled; i++) fillBlock(img, i, o.blockSize, `${o.disk}-${i}`);
  await f.engine.addDisk({ path: img, name: o.disk });
  const snap = await snapshot(f.engine, o.disk, o.snapshot);
  return { ...f, img, snap };
}

/**
 * A snapshot of another size under `disk`, as `snapshot import --disk` makes one: `snap` is
 * exported to a stream in `images`, deleted, and imported again under `disk`. Returns its record.
 */
export async function importedUnder(f: Fixture, snapRef: string, disk: string): Promise<import('../../src/engine/types').Snapshot> {
  const snap = f.engine.getSnapshot(snapRef);
  const stream = join(f.images, `${snap.id}.bsnap`);
  await finished(f.engine, f.engine.offsite.streams.startExport(snap.id, stream));
  await f.engine.deleteSnapshot(snap.id);
  await finished(f.engine, f.engine.offsite.streams.startImport(stream, disk));
  return f.engine.getSnapshot(snap.id);
}
