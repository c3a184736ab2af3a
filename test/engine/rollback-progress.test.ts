/**
 * A raw rollback's progress follows its work: the data it compares, then the blocks it writes,
 * with the phase that tells an operator whether a cancel would leave the disk as it was.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import type { Job } from '../../src/engine/types';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { makeImage, randomData, writeAt } from '../helpers/images';

const BS = 64 * 1024;

/** A disk of 64 blocks whose data, 8 blocks, sits at the end, snapshotted; then 3 of those blocks overwritten. */
async function changedAtTheEnd(t: Test) {
  const f = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(f.images, 'd.raw'), 64 * BS);
  writeAt(img, 56 * BS, randomData(8 * BS));
  const disk = await f.engine.addDisk({ path: img, name: 'd' });
  const snap = await snapshot(f.engine, disk.id, 'base');
  writeAt(img, 57 * BS, randomData(BS));
  writeAt(img, 60 * BS, randomData(2 * BS));
  return { ...f, img, disk, snap };
}

t.test('a raw rollback counts the data it compares, then the blocks it writes, and ends writing', async (t) => {
  const f = await changedAtTheEnd(t);
  const events: Job[] = [];
  f.engine.on('job', (j: Job) => { if (j.kind === 'rollback') events.push(j); });
  const end = await finished(f.engine, f.engine.startRollback(f.disk.id, f.snap.id));
  t.match(end, { phase: 'writing', doneBytes: 11 * BS, totalBytes: 11 * BS }, '8 data blocks compared, 3 written; not the 64 of the virtual size');
  t.match(end.result, { bytesWritten: 3 * BS });
  t.ok(events.every((j, i) => i === 0 || j.doneBytes >= events[i - 1]!.doneBytes), 'done never decreases');
  const share = (j: Job): number => (j.totalBytes > 0 ? j.doneBytes / j.totalBytes : 0);
  t.ok(events.every((j, i) => i === 0 || share(j) >= share(events[i - 1]!)), 'the share done never decreases, at the change of phase either');
  t.ok(events.every((j) => j.phase !== 'comparing' || (j.totalBytes >= 11 * BS && j.totalBytes <= 16 * BS)),
    'while comparing, the total is the data to compare and at most the 8 blocks it may write');
  const firstWriting = events.findIndex((j) => j.phase === 'writing');
  t.ok(firstWriting >= 0 && events.slice(firstWriting).every((j) => j.phase === 'writing'), 'never comparing again once writing');
});

t.test('a raw clone is writing throughout and counts the blocks it writes', async (t) => {
  const f = await changedAtTheEnd(t);
  const end = await finished(f.engine, f.engine.startClone(f.snap.id, join(f.images, 'copy.raw')));
  t.match(end, { phase: 'writing', doneBytes: 8 * BS, totalBytes: 8 * BS });
});
