/**
 * A rollback commits the disk's new head and its job's success in one catalog transaction. A
 * daemon killed right after that commit must not report the job `interrupted`: the operator would
 * rerun it, and a rerun throws away every write made since.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import { readAll, served } from '../helpers/cow';
import { snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { KiB64 } from '../helpers/model';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');

/** Runs the rollback of `disk` to `snap` in an engine that dies right after its commit. */
function killedAfterRollbackCommit(t: Test, dataDir: string, images: string, disk: string, snap: string): void {
  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'rollback-kill-child.ts'))})`;
  const child = spawnSync(process.execPath, ['-e', main, dataDir, images, disk, snap], {
    cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 120_000,
  });
  t.equal(child.signal, 'SIGKILL', `the child was killed after the rollback's commit: ${child.stderr}`);
}

/** A data dir and an image root in the test's own directory, and how to open an engine on them. */
function dirs(t: Test): { dataDir: string; images: string; open: () => Promise<Engine> } {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  return { dataDir, images, open: () => Engine.open({ dataDir, imageRoots: [images], blockSize: KiB64 }) };
}

t.test('a COW rollback killed right after its commit reads succeeded after the restart, not interrupted', async (t) => {
  const { dataDir, images, open } = dirs(t);
  let engine = await open();
  const img = makeImage(join(images, 'p.raw'), 4 * KiB64);
  for (let i = 0; i < 4; i++) fillBlock(img, i, KiB64, `p-${i}`);
  await engine.addDisk({ path: img, name: 'p' });
  await snapshot(engine, 'p', 'p1');
  await engine.cloneCow('p1', 'c');
  const b = await served(engine, 'c');
  await b.write!(KiB64, pattern('before', 8192), true);
  const target = await snapshot(engine, 'c', 'target');
  const atTarget = await readAll(b);
  await b.write!(2 * KiB64, pattern('after', 8192), true);
  await engine.close();

  killedAfterRollbackCommit(t, dataDir, images, 'c', 'target');

  engine = await open();
  t.teardown(() => engine.close());
  const job = engine.listJobs().find((j) => j.kind === 'rollback');
  t.match(job, { state: 'succeeded', error: null, result: { snapshotId: target.id, diskId: engine.getDisk('c').id } },
    'the job reads as what it did: the rollback is applied');
  t.match(engine.getDisk('c'), { headSnapshotId: target.id, cow: { baseSnapshotId: target.id } });
  t.ok((await readAll(await served(engine, 'c'))).equals(atTarget), 'the disk reads as the target');
});

t.test('a raw rollback killed right after its commit reads succeeded after the restart, not interrupted', async (t) => {
  const { dataDir, images, open } = dirs(t);
  let engine = await open();
  const img = makeImage(join(images, 'r.raw'), 8 * KiB64);
  for (let i = 0; i < 8; i++) fillBlock(img, i, KiB64, `r-${i}`);
  await engine.addDisk({ path: img, name: 'r' });
  const target = await snapshot(engine, 'r', 'target');
  const atTarget = readFileSync(img);
  for (let i = 0; i < 8; i += 2) fillBlock(img, i, KiB64, `later-${i}`);
  await engine.close();

  killedAfterRollbackCommit(t, dataDir, images, 'r', 'target');

  engine = await open();
  t.teardown(() => engine.close());
  const job = engine.listJobs().find((j) => j.kind === 'rollback');
  t.match(job, { state: 'succeeded', error: null, result: { snapshotId: target.id, blocksWritten: 4 } },
    'the job reads as what it did: the rollback is applied');
  t.match(engine.getDisk('r'), { headSnapshotId: target.id, pendingRollback: null });
  t.ok(readFileSync(img).equals(atTarget), 'the image holds the target');
});
