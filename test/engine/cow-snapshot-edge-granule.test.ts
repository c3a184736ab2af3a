/**
 * A snapshot of a served copy-on-write disk scans the blocks written since its base: a block
 * whose only write is its last 4 KiB granule is one of them.
 */
import t from 'tap';
import { cloned, readAll, served } from '../helpers/cow';
import { engineWithSnapshot, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';

const BS = 64 * 1024;

t.test('a snapshot holds a write to only a block\'s last 4 KiB', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  await f.engine.cloneCow('base', 'c');
  const b = await served(f.engine, 'c');
  await b.write!(2 * BS - 4096, pattern('last granule', 4096), false);
  const live = await readAll(b);
  const s = await snapshot(f.engine, 'c', 'one');
  t.ok((await cloned(f.engine, f.images, s, 'one.raw')).equals(live), 'the snapshot reads as the disk');
});
