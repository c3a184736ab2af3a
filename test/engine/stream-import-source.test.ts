/**
 * The stream input of `snapshot import -i PATH` is refused in words about streams, not disk
 * images, though it is checked like an image path (inside a root, a regular file).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { openEngine } from '../helpers/engine';
import { makeImage } from '../helpers/images';

t.test('a block device named as a stream input is refused, with the ways a stream is read', {
  skip: process.getuid?.() === 0 ? false : 'making a device node needs root',
}, async (t) => {
  const { engine, images } = await openEngine(t);
  await engine.addDisk({ path: makeImage(join(images, 'vm.raw'), 64 * 1024), name: 'vm' });
  const dev = join(images, 'tape');
  // A node of loop device 7:5; nothing opens it.
  t.equal(spawnSync('mknod', [dev, 'b', '7', '5']).status, 0, 'mknod');
  t.throws(() => engine.offsite.streams.startImport(dev, 'vm'), {
    code: 'NotAnImage',
    message: `${dev} is a block device; a snapshot stream is imported from a regular file inside an image root or through ` +
      'standard input (blocksnap snapshot import -i - --disk DISK): copy the stream\'s bytes off the device into one of them',
  });
});

t.test('a stream input that does not exist is told as a stream file', async (t) => {
  const { engine, images } = await openEngine(t);
  await engine.addDisk({ path: makeImage(join(images, 'vm.raw'), 64 * 1024), name: 'vm' });
  const gone = join(images, 'gone.bsnap');
  t.throws(() => engine.offsite.streams.startImport(gone, 'vm'), { code: 'ImageNotFound', message: `stream file ${gone} does not exist` });
});
