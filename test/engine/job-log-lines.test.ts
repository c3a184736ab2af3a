/**
 * A line a job logs about its work carries the job's id, the one its caller was given: the
 * operator finds every line of one job with it, as the line of the job's end has it.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine, type EngineLogger } from '../../src/engine';
import type { Job } from '../../src/engine/types';
import { finished } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

interface Line { fields: Record<string, unknown>; msg: string }

async function open(t: Test): Promise<{ engine: Engine; images: string; lines: Line[] }> {
  const dir = t.testdir();
  const images = join(dir, 'images');
  mkdirSync(images);
  const lines: Line[] = [];
  const keep = (fields: object, msg?: string): void => { lines.push({ fields: fields as Record<string, unknown>, msg: msg ?? '' }); };
  const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], blockSize: BS, logger });
  t.teardown(() => engine.close());
  return { engine, images, lines };
}

async function rawDisk(engine: Engine, images: string): Promise<string> {
  const img = makeImage(join(images, 'vm.raw'), 4 * BS);
  fillBlock(img, 0, BS, 'vm-0');
  return (await engine.addDisk({ path: img, name: 'vm' })).id;
}

/** The job ids of the lines with message `msg`. */
function jobIdsOf(lines: Line[], msg: string): unknown[] {
  return lines.filter((l) => l.msg === msg).map((l) => l.fields.jobId);
}

async function run(engine: Engine, start: () => Job): Promise<Job> {
  return finished(engine, start());
}

t.test('"snapshot available" carries the snapshot job\'s id', async (t) => {
  const { engine, images, lines } = await open(t);
  const disk = await rawDisk(engine, images);
  const job = await run(engine, () => engine.startSnapshot(disk));
  t.same(jobIdsOf(lines, 'snapshot available'), [job.id]);
});

t.test('"rollback finished" carries the rollback job\'s id', async (t) => {
  const { engine, images, lines } = await open(t);
  const disk = await rawDisk(engine, images);
  const snap = await run(engine, () => engine.startSnapshot(disk));
  const job = await run(engine, () => engine.startRollback(disk, snap.snapshotId!));
  t.same(jobIdsOf(lines, 'rollback finished'), [job.id]);
});

t.test('a copy-on-write disk\'s snapshot, rollback and flatten lines carry their jobs\' ids', async (t) => {
  const { engine, images, lines } = await open(t);
  const disk = await rawDisk(engine, images);
  const base = await run(engine, () => engine.startSnapshot(disk));
  const cow = await engine.cloneCow(base.snapshotId!, 'cow');
  const snap = await run(engine, () => engine.startSnapshot(cow.id));
  const rollback = await run(engine, () => engine.startRollback(cow.id, snap.snapshotId!));
  const flatten = await run(engine, () => engine.startFlatten(cow.id, join(images, 'flat.raw')));
  t.same(jobIdsOf(lines, 'point-in-time snapshot available'), [snap.id]);
  t.same(jobIdsOf(lines, 'copy-on-write disk rolled back'), [rollback.id]);
  t.same(jobIdsOf(lines, 'copy-on-write disk flattened'), [flatten.id]);
});

t.test('"gc finished" carries the gc job\'s id', async (t) => {
  const { engine, lines } = await open(t);
  const job = await run(engine, () => engine.startGc());
  t.same(jobIdsOf(lines, 'gc finished'), [job.id]);
});
