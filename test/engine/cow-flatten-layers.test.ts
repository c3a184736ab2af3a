/**
 * A flatten needs its instant's layer only while it runs: afterwards, when nothing was written
 * meanwhile, the layer goes and the one below takes writes again, so repeated flattens, cancelled
 * ones included, leave the disk's layer stack as they found it.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAll, served } from '../helpers/cow';
import { engineWithSnapshot, finished, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';
import type { CowVolumes } from '../../src/engine/cow-volumes';

const BS = 64 * 1024;

t.test('a flatten of a served disk leaves one layer, which takes the writes after it and keeps them across a reopen', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  await f.engine.cloneCow('base', 'c');
  const b = await served(f.engine, 'c');
  await b.write!(1000, pattern('before', 5000), false);
  const job = await finished(f.engine, f.engine.startFlatten('c', join(f.images, 'flat.raw')));
  t.equal(job.state, 'succeeded');
  t.equal(f.engine.getDisk('c').cow!.layers.length, 1, 'the instant\'s layer is gone');
  await b.write!(3 * BS, pattern('after', 5000), false);
  const expected = await readAll(b);
  t.ok(readFileSync(join(f.images, 'flat.raw')).subarray(0, 3 * BS).equals(expected.subarray(0, 3 * BS)), 'the image holds the disk as of the flatten');
  await f.engine.exports.stop('c');
  t.ok((await readAll(await served(f.engine, 'c'))).equals(expected), 'both writes read back from the layer files');
});

t.test('flattens cancelled as they start leave the disk its one layer and no other file', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  const d = await f.engine.cloneCow('base', 'c');
  for (let i = 0; i < 5; i++) {
    const job = f.engine.startFlatten('c', join(f.images, `flat-${i}.raw`));
    f.engine.cancelJob(job.id);
    t.equal((await f.engine.waitJob(job.id)).state, 'cancelled');
  }
  t.same(f.engine.getDisk('c').cow!.layers, d.cow!.layers, 'the layer it was cloned with');
  await f.engine.close();
  t.same(readdirSync(d.path).sort(), [`${d.cow!.layers[0]}.data`, `${d.cow!.layers[0]}.map`]);
});

t.test('a layer written while a flatten held its instant stays with its writes, and the next snapshot folds it', async (t) => {
  // The window between a flatten's freeze and its fold, taken step by step as the flatten takes
  // it: a timed write cannot be sure to land inside a flatten of a few blocks.
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  const d = await f.engine.cloneCow('base', 'c');
  const volumes = (f.engine as unknown as { volumes: CowVolumes }).volumes;
  const b = await served(f.engine, 'c');
  const lease = await volumes.acquire(d.id);
  await volumes.freeze(lease.open, d.id);
  await b.write!(2 * BS + 10, pattern('meanwhile', 6000), false);
  t.equal(await volumes.foldEmptyTop(lease.open, d.id), false, 'a written top is not folded');
  t.equal(f.engine.getDisk('c').cow!.layers.length, 2, 'so it stays listed');
  const expected = await readAll(b);
  t.ok(expected.subarray(2 * BS + 10, 2 * BS + 6010).equals(pattern('meanwhile', 6000)), 'holding the write');
  await lease.release();
  const snap = await snapshot(f.engine, 'c', 'after');
  await f.engine.idle();
  t.equal(f.engine.getDisk('c').cow!.layers.length, 1, 'the next snapshot folds it');
  t.same(readdirSync(d.path).sort(), f.engine.getDisk('c').cow!.layers.flatMap((l) => [`${l}.data`, `${l}.map`]).sort(), 'and its files go');
  t.ok((await readAll(b)).equals(expected), 'the disk reads the same');
  t.equal(snap.status, 'available');
});
