/**
 * A qcow2 disk rolled back to a snapshot whose size is not a multiple of 512 records the size of
 * the image written (qcow2 sizes are whole sectors), so a later rollback tells of no size change.
 */
import t from 'tap';
import { join } from 'node:path';
import type { RollbackResult } from '../../src/engine/types';
import { finished, importedUnder, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;
const ODD = 2 * BS + 1;
const ROUNDED = 2 * BS + 512;

/** qcow2 disk q (a qcow2 clone of a snapshot of odd-sized raw disk p) with p's snapshot imported under it. */
async function qcow2WithOddSnapshot(t: Parameters<typeof openEngine>[0]) {
  const f = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(f.images, 'p.raw'), ODD);
  fillBlock(img, 0, BS, 'p-0');
  fillBlock(img, 2, BS, 'p-2', 1);
  await f.engine.addDisk({ path: img, name: 'p' });
  await snapshot(f.engine, 'p', 'odd');
  await finished(f.engine, f.engine.startClone('odd', join(f.images, 'q.qcow2'), { format: 'qcow2' }));
  await f.engine.addDisk({ path: join(f.images, 'q.qcow2'), name: 'q' });
  const target = await importedUnder(f, 'odd', 'q');
  return { ...f, target };
}

t.test('a qcow2 rollback to an odd-sized snapshot records the 512-rounded size of the image it wrote', async (t) => {
  const { engine, target } = await qcow2WithOddSnapshot(t);
  t.equal(target.sizeBytes, ODD);
  const r = (await finished(engine, engine.startRollback('q', target.id))).result as RollbackResult;
  t.equal(r.sizeBytes, ROUNDED);
  t.equal(engine.getDisk('q').sizeBytes, ROUNDED);
});

t.test('a second qcow2 rollback to the same odd-sized snapshot finds the size unchanged', async (t) => {
  const { engine, target } = await qcow2WithOddSnapshot(t);
  await finished(engine, engine.startRollback('q', target.id));
  const r = (await finished(engine, engine.startRollback('q', target.id))).result as RollbackResult;
  t.match(r, { previousSizeBytes: ROUNDED, sizeBytes: ROUNDED });
});
