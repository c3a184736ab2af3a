/**
 * Zeros written over data (not punched: the blocks stay allocated, and their pages stay in the
 * page cache, where a rollback recognises a block without reading it) are not the snapshot's data.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, writeAt } from '../helpers/images';

const BS = 64 * 1024;

t.test('a rollback writes the snapshot\'s data back over blocks zeroed in the page cache', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'a.raw'), 8 * BS);
  for (let i = 0; i < 8; i++) fillBlock(img, i, BS, `a${i}`);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const before = readFileSync(img);
  writeAt(img, 0, Buffer.alloc(3 * BS));
  readFileSync(img);
  const job = await finished(engine, engine.startRollback(disk.id, snap.id));
  t.match(job.result, { blocksWritten: 3 });
  t.ok(readFileSync(img).equals(before), 'the image is the snapshot again');
});
