/**
 * Streams onto a full filesystem fail as NoSpace, naming the file: a write(2) near a full
 * filesystem writes what fits and returns a short count without failing, and only the next call
 * fails with ENOSPC, so a short count taken for the failure reported a full disk as a failing one
 * (IOError). Both ends: a stream written to a file (snapshot export, whose large writes are cut
 * short here), and a stream's blocks written into a data dir (snapshot import, whichever of its
 * writes meets the full filesystem first).
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import { snapshot } from '../helpers/engine';
import { MiB, makeImage, pattern, writeAt } from '../helpers/images';
import { ballast, smallFsOrSkip } from './small-fs';

const BLOCK = 64 * 1024;

t.test('a stream exported onto a full filesystem is NoSpace, naming its target, which was not created', async (t) => {
  const small = smallFsOrSkip(t, 'bss-', 32);
  if (small === null) return;
  const images = join(small.fs.dir, 'images');
  mkdirSync(images);
  const engine = await Engine.open({ dataDir: join(small.tempDir, 'data'), imageRoots: [images], blockSize: BLOCK });
  t.teardown(() => engine.close());
  const img = makeImage(join(images, 'vm.raw'), 8 * MiB);
  writeAt(img, 0, pattern('vm', 6 * MiB));
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  // Room for part of the stream: the first writes fit, one is cut short, the next fails.
  ballast(images, 2 * MiB + 12345);

  const target = join(images, 'vm.stream');
  const job = await engine.waitJob(engine.offsite.streams.startExport(snap.id, target).id);
  t.equal(job.state, 'failed');
  t.equal(job.error?.code, 'NoSpace', job.error?.message ?? 'no error');
  t.match(job.error?.message, /^ENOSPC: no space left on device, write/);
  t.match(job.error?.message, `${target} was not created`);
  t.notMatch(job.error?.message, '.partial');
  t.same(readdirSync(images).sort(), ['ballast', 'vm.raw'], 'nothing is left beside the disk');
});

t.test('a stream imported into a full data dir is NoSpace, and stores nothing', async (t) => {
  const small = smallFsOrSkip(t, 'bsi-', 48);
  if (small === null) return;
  const images = join(small.tempDir, 'images');
  mkdirSync(images);
  const from = await Engine.open({ dataDir: join(small.tempDir, 'from'), imageRoots: [images], blockSize: BLOCK });
  t.teardown(() => from.close());
  const img = makeImage(join(images, 'vm.raw'), 16 * MiB);
  writeAt(img, 0, pattern('vm', 12 * MiB));
  const snap = await snapshot(from, (await from.addDisk({ path: img })).id);
  const stream = join(images, 'vm.stream');
  t.equal((await from.waitJob(from.offsite.streams.startExport(snap.id, stream).id)).state, 'succeeded');

  const data = join(small.fs.dir, 'data');
  const to = await Engine.open({ dataDir: data, imageRoots: [images], blockSize: BLOCK });
  t.teardown(() => to.close());
  const disk = await to.addDisk({ path: img, name: 'copy' });
  ballast(small.fs.dir, 4 * MiB + 12345);
  const job = await to.waitJob(to.offsite.streams.startImport(stream, disk.id).id);
  t.equal(job.state, 'failed');
  t.equal(job.error?.code, 'NoSpace', job.error?.message ?? 'no error');
  t.same(readdirSync(join(data, 'blocks', 'tmp')), [], 'no block is left half written');
  t.same(to.listSnapshots('copy').filter((s) => s.status === 'available'), [], 'no snapshot of it is available');
});
