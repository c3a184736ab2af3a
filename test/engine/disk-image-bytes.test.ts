/**
 * Disk.imageBytes is the image's size as it is now, beside sizeBytes, the size recorded at the
 * last snapshot or rollback.
 */
import t from 'tap';
import { rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

t.test('a raw image resized since its snapshot: imageBytes is its length now, sizeBytes the snapshot\'s', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'a.raw'), 2 * BS + 3);
  await engine.addDisk({ path: img, name: 'a' });
  await snapshot(engine, 'a', 'one');
  truncateSync(img, 5 * BS);
  t.match(engine.getDisk('a'), { sizeBytes: 2 * BS + 3, imageBytes: 5 * BS });
  t.match(engine.listDisks().find((d) => d.name === 'a'), { imageBytes: 5 * BS });
});

t.test('a qcow2 image: imageBytes is the virtual size its header gives, not the file\'s length', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'p.raw'), 2 * BS + 1);
  fillBlock(img, 0, BS, 'p-0');
  await engine.addDisk({ path: img, name: 'p' });
  await snapshot(engine, 'p', 'odd');
  const q = join(images, 'q.qcow2');
  await finished(engine, engine.startClone('odd', q, { format: 'qcow2' }));
  await engine.addDisk({ path: q, name: 'q' });
  t.not(statSync(q).size, 2 * BS + 512);
  t.equal(engine.getDisk('q').imageBytes, 2 * BS + 512);
});

t.test('an image that is gone: imageBytes is null', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'a.raw'), BS);
  await engine.addDisk({ path: img, name: 'a' });
  rmSync(img);
  t.equal(engine.getDisk('a').imageBytes, null);
});

t.test('a copy-on-write disk: imageBytes is its size', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  await engine.addDisk({ path: makeImage(join(images, 'a.raw'), BS + 7), name: 'a' });
  await snapshot(engine, 'a', 'one');
  await engine.cloneCow('one', 'c');
  t.match(engine.getDisk('c'), { sizeBytes: BS + 7, imageBytes: BS + 7 });
});
