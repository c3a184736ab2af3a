/**
 * An imported snapshot keeps its name unless the disk already has a snapshot of that name; then
 * it takes a suffix, and the result says so, rather than leaving the operator to find a
 * snapshot under a name nobody gave.
 */
import t, { type Test } from 'tap';
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ImportResult } from '../../src/engine/offsite-types';
import { finished, openEngine, secondEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

/** Snapshot `s2` of a disk on host a, exported as a stream; host b with a disk of its own. */
async function streamOfS2(t: Test) {
  const a = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(a.images, 'a.raw'), 2 * BS);
  fillBlock(img, 0, BS, 'a0');
  const disk = await a.engine.addDisk({ path: img });
  const s2 = await snapshot(a.engine, disk.id, 's2');
  const stream = join(a.images, 's.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport(s2.id, stream));
  const b = await secondEngine(t, a, BS);
  const imgB = makeImage(join(b.images, 'b.raw'), 2 * BS);
  fillBlock(imgB, 0, BS, 'b0');
  const diskB = await b.engine.addDisk({ path: imgB });
  copyFileSync(stream, join(b.images, 's.bsnap'));
  const importIt = async (): Promise<ImportResult> =>
    (await finished(b.engine, b.engine.offsite.streams.startImport(join(dirname(b.dataDir), 'images', 's.bsnap'), diskB.id))).result as ImportResult;
  return { b, diskB, s2, importIt };
}

t.test('an import keeps the snapshot\'s name where the disk has none of that name', async (t) => {
  const { importIt } = await streamOfS2(t);
  t.match(await importIt(), { name: 's2', renamedFrom: null });
});

t.test('an import whose name the disk already has takes a suffix, and the result names both', async (t) => {
  const { b, diskB, s2, importIt } = await streamOfS2(t);
  await snapshot(b.engine, diskB.id, 's2');
  t.match(await importIt(), { snapshotId: s2.id, name: 's2-2', renamedFrom: 's2' });
  t.equal(b.engine.getSnapshot(s2.id).name, 's2-2');
});
