/**
 * A clone that runs out of room on the target's filesystem says so about the path it was asked
 * for, and that nothing was created there: the file it wrote had no name (O_TMPFILE), or a partial
 * name that is removed with it, so naming `.blocksnap-<job>.partial` would point at nothing.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import { snapshot } from '../helpers/engine';
import { MiB, makeImage, pattern, writeAt } from '../helpers/images';
import { ballast, smallFsOrSkip } from './small-fs';

async function cloneOnFullFs(t: Test): Promise<void> {
  const small = smallFsOrSkip(t, 'bsc-', 32);
  if (small === null) return;
  const images = join(small.fs.dir, 'images');
  mkdirSync(images);
  const engine = await Engine.open({ dataDir: join(small.tempDir, 'data'), imageRoots: [images], blockSize: 64 * 1024 });
  t.teardown(() => engine.close());
  const img = makeImage(join(images, 'vm.raw'), 8 * MiB);
  writeAt(img, 0, pattern('vm', 4 * MiB));
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  ballast(images, 256 * 1024);

  const target = join(images, 'copy.raw');
  const job = await engine.waitJob(engine.startClone(snap.id, target).id);
  t.equal(job.state, 'failed');
  t.equal(job.error?.code, 'NoSpace');
  t.match(job.error?.message, `${target}: No space left on device`);
  t.match(job.error?.message, `${target} was not created`);
  t.notMatch(job.error?.message, '.partial');
  t.same(readdirSync(images).sort(), ['ballast', 'vm.raw'], 'nothing is left beside the disk');
}

t.test('a clone onto a full filesystem names its target, which was not created', cloneOnFullFs);

t.test('the same where the filesystem has no O_TMPFILE and the file had its partial name', async (t) => {
  process.env.BLOCKSNAP_NO_TMPFILE = '1';
  t.teardown(() => { delete process.env.BLOCKSNAP_NO_TMPFILE; });
  await cloneOnFullFs(t);
});
