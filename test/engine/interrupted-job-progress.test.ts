/**
 * A job the daemon's death interrupts keeps how far it got and when it was last seen running:
 * its progress is written every PROGRESS_RECORD_MS. Before, it read `0 B of 0 B`, and its end was
 * the restart, counting however long the daemon was down as the job's own time.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import { fillBlock, makeImage } from '../helpers/images';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');
const BS = 64 * 1024;
const MiB = 1024 * 1024;

t.test('a snapshot job SIGKILLed mid-scan reads interrupted with its last recorded progress, ending when that was recorded', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  let engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  const img = makeImage(join(images, 'vm.raw'), 128 * BS);
  fillBlock(img, 0, BS, 'vm-0');
  await engine.addDisk({ path: img, name: 'vm' });
  await engine.close();

  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'interrupted-job-progress-child.ts'))})`;
  const child = spawnSync(process.execPath, ['-e', main, dataDir, images, 'vm'], { cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 120_000 });
  t.equal(child.signal, 'SIGKILL', `the child was killed mid-job: ${child.stderr}`);

  engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  t.teardown(() => engine.close());
  const job = engine.listJobs().find((j) => j.kind === 'snapshot')!;
  t.match(job, { state: 'interrupted', doneBytes: 3 * MiB, totalBytes: 8 * MiB }, 'the progress last recorded before the kill');
  t.ok(job.progressAt !== undefined && job.finishedAt === job.progressAt, 'its end is when that progress was recorded');
  t.ok(Date.parse(job.finishedAt!) - Date.parse(job.startedAt) < 30_000, 'not the time of the restart');
});
