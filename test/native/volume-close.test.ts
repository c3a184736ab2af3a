/**
 * Closing a volume (src/native/volume.ts) closes the block files its reads kept open when the
 * close settles, not when JS collects the wrapper: an export stopped and started over and over
 * must not run the daemon out of file descriptors, nor keep deleted blocks' space.
 */
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

import { scanImage } from '../../src/native/index';
import { Volume } from '../../src/native/volume';
import { KiB, makeImage, makeStore, noise } from './fixtures/images';

const BLOCK = 64 * KiB;
const BLOCKS = 50;
const SIZE = BLOCKS * BLOCK;

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

t.test('a closed volume holds none of the block files it read', async (t) => {
  const dir = t.testdir();
  const store = makeStore(dir);
  const img = join(dir, 'base.img');
  const base = noise(SIZE);
  makeImage(img, SIZE, [[0, base]]);
  const { digests } = await scanImage({ imagePath: img, storeDir: store, blockSize: BLOCK });
  const before = openFds();
  const v = Volume.openNow({ storeDir: store, blockSize: BLOCK, sizeBytes: SIZE, baseDigests: digests, layers: [], writable: false });
  // The first pass verifies every block whole; the second reads them in place through kept files.
  for (let pass = 0; pass < 2; pass++) {
    const heads: Buffer[] = [];
    for (let i = 0; i < BLOCKS; i++) heads.push(await v.read(i * BLOCK, 4 * KiB));
    const expected = Array.from({ length: BLOCKS }, (_, i) => base.subarray(i * BLOCK, i * BLOCK + 4 * KiB));
    t.ok(Buffer.concat(heads).equals(Buffer.concat(expected)), `pass ${pass + 1} reads the base`);
  }
  t.ok(openFds() > before, 'reading kept block files open');
  await v.close();
  t.equal(openFds(), before, 'the close closed them');
  // The wrapper is still reachable here, so no collection can have closed the files.
  t.equal(v.writtenBytes(), 0);
});
