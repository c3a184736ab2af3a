/**
 * A snapshot of a served copy-on-write disk is the disk at its instant: the scan reads the frozen
 * layers only, so writes that land in the new top while it runs stay out of it, even on blocks
 * that were already written before the instant (and so are in the scan's list).
 */
import t from 'tap';
import { Volume } from '../../src/native/volume';
import { cloned, readAll, served } from '../helpers/cow';
import { engineWithSnapshot, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';

const BS = 64 * 1024;

t.test('a snapshot holds a written block as of its instant, not as rewritten while its scan runs', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  await f.engine.cloneCow('base', 'c');
  const b = await served(f.engine, 'c');
  await b.write!(BS + 4096, pattern('before', 8192), false);
  const atInstant = await readAll(b);
  // The dirty list is taken after the instant and before the scan: the rewrite lands in between,
  // on a block the list holds, as a guest's write would while a long scan runs.
  const dirtyBlocks = Volume.prototype.dirtyBlocks;
  t.teardown(() => { Volume.prototype.dirtyBlocks = dirtyBlocks; });
  let rewritten = false;
  Volume.prototype.dirtyBlocks = async function (this: Volume, layerCount: number) {
    const blocks = await dirtyBlocks.call(this, layerCount);
    if (!rewritten) {
      rewritten = true;
      await b.write!(BS + 4096, pattern('after', 8192), false);
    }
    return blocks;
  };
  const s = await snapshot(f.engine, 'c', 'one');
  t.ok(rewritten, 'the block was rewritten between the instant and the scan');
  t.ok((await readAll(b)).subarray(BS + 4096, BS + 4096 + 8192).equals(pattern('after', 8192)), 'the disk holds the rewrite');
  t.ok((await cloned(f.engine, f.images, s, 'one.raw')).equals(atInstant), 'the snapshot holds the block as it was at the instant');
});
