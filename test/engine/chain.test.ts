/**
 * The chain example of the product docs: M,N,Q,P -> V1 (4 blocks); S written -> V2 (5 stored);
 * N changed -> V3 (6 stored); delete V3 -> 5 and V1, V2 restore; delete V1 -> V2 still restores.
 */
import t from 'tap';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { MiB, fillBlock, makeImage, sha256File } from '../helpers/images';

const BS = 4 * MiB;

t.test('chain example: incremental storage, deletes free exactly the unreferenced blocks', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'vm.raw'), 5 * BS);
  for (const [i, seed] of ['M', 'N', 'Q', 'P'].entries()) fillBlock(img, i, BS, seed);
  const disk = await engine.addDisk({ path: img, name: 'vm' });

  const v1 = await snapshot(engine, disk.id, 'V1');
  const h1 = await sha256File(img);
  t.equal(engine.storeStats().blocks, 4, 'V1 stores 4 blocks');
  t.equal(v1.newBytes, 4 * BS);

  fillBlock(img, 4, BS, 'S');
  const v2 = await snapshot(engine, disk.id, 'V2');
  const h2 = await sha256File(img);
  t.equal(engine.storeStats().blocks, 5, 'V2 adds one block, not 5');
  t.equal(v2.changedBlocks, 1);
  t.equal(v2.parentId, v1.id);

  fillBlock(img, 1, BS, "N'");
  const v3 = await snapshot(engine, disk.id, 'V3');
  t.equal(engine.storeStats().blocks, 6, 'V3 adds one block, not 5');
  t.equal(v3.newBytes, BS);

  await engine.deleteSnapshot('V3');
  await engine.idle();
  t.equal(engine.storeStats().blocks, 5, 'deleting V3 frees its one unique block');
  t.equal(engine.storeStats().pendingFreeBlocks, 0, 'and the sweeper unlinked it');

  for (const [snap, hash] of [[v1.id, h1], [v2.id, h2]] as const) {
    const out = join(images, `restore-${snap}.raw`);
    await finished(engine, engine.startClone(snap, out));
    t.equal(await sha256File(out), hash, `${snap} restores bit-exactly`);
  }

  await engine.deleteSnapshot(v1.id);
  t.equal(engine.storeStats().blocks, 5, 'V2 still references all five blocks');
  const out = join(images, 'restore-v2-after.raw');
  await finished(engine, engine.startClone(v2.id, out));
  t.equal(await sha256File(out), h2, 'V2 restores after its parent was deleted');
});
