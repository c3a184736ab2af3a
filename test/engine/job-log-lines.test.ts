/**
 * A line a job logs about its work carries the job's id, the one its caller was given: the
 * operator finds every line of one job with it, as the line of the job's end has it.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine, type EngineLogger } from '../../src/engine';
import type { Job } from '../../src/engine/types';
import { served } from '../helpers/cow';
import { finished } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';

const BS = 64 * 1024;

interface Line { fields: Record<string, unknown>; msg: string }

async function open(t: Test, o: { autoQuota?: number } = {}): Promise<{ engine: Engine; images: string; dataDir: string; lines: Line[] }> {
  const dir = t.testdir();
  const images = join(dir, 'images');
  mkdirSync(images);
  const lines: Line[] = [];
  const keep = (fields: object, msg?: string): void => { lines.push({ fields: fields as Record<string, unknown>, msg: msg ?? '' }); };
  const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
  const dataDir = join(dir, 'data');
  const quota = o.autoQuota === undefined ? {} : { snapshotQuota: { auto: o.autoQuota } };
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS, logger, ...quota });
  t.teardown(() => engine.close());
  return { engine, images, dataDir, lines };
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
  t.match(lines.find((l) => l.msg === 'rollback finished')?.fields, { holesPunched: Number, blocksZeroed: Number }, 'it counts the blocks zero-filled apart from holes punched');
});

t.test('the lines of a snapshot failed after its scan carry the snapshot job\'s id', async (t) => {
  const { engine, images, dataDir, lines } = await open(t);
  const disk = await rawDisk(engine, images);
  await run(engine, () => engine.startSnapshot(disk, { name: 'base' }));
  await engine.cloneCow('base', 'cow');
  const b = await served(engine, 'cow');
  await b.write!(2 * BS, pattern('new-2', BS), true);
  await engine.exports.stop('cow');
  // Block 0 is read from the base, unwritten: recorded missing, it fails the snapshot after its
  // scan stored block 2, which the failure frees.
  rmSync(blockPath(dataDir, sha(pattern('vm-0', BS))));
  await run(engine, () => engine.startVerify());
  const failed = await engine.waitJob(engine.startSnapshot('cow').id);
  t.equal(failed.error?.code, 'BlockMissing');
  t.same(jobIdsOf(lines, 'blocks of the failed or cancelled snapshot freed'), [failed.id]);
});

t.test('the automatic quota\'s deletion carries the id of the snapshot job that made room', async (t) => {
  const { engine, images, lines } = await open(t, { autoQuota: 1 });
  const disk = await rawDisk(engine, images);
  await run(engine, () => engine.startSnapshot(disk, { type: 'auto', name: 'a1' }));
  const job = await run(engine, () => engine.startSnapshot(disk, { type: 'auto', name: 'a2' }));
  t.same(jobIdsOf(lines, 'automatic snapshot quota: deleted failed and oldest automatic snapshots'), [job.id]);
});

t.test('a mend\'s lines carry the import job\'s id', async (t) => {
  const { engine, images, dataDir, lines } = await open(t);
  const disk = await rawDisk(engine, images);
  await run(engine, () => engine.startSnapshot(disk, { name: 's1' }));
  const stream = join(images, 's1.bsnap');
  await run(engine, () => engine.offsite.streams.startExport('s1', stream));
  rmSync(blockPath(dataDir, sha(pattern('vm-0', BS))));
  const job = await run(engine, () => engine.offsite.streams.startImport(stream, disk));
  t.match(job.result, { mended: true, repairedBlocks: 1 });
  const snap = engine.getSnapshot('s1').id;
  t.same(jobIdsOf(lines, `damaged or missing blocks written again from a stream of snapshot ${snap}`), [job.id]);
  t.same(jobIdsOf(lines, 'snapshot mended from a stream of itself'), [job.id]);
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
