/**
 * An incremental stream leaves out the blocks its base has. When this host's store has lost one
 * of them (deleted by hand) the import is refused as BlockMissing, with how to repair it, and the
 * loss is recorded; before, it was BaseMissing, whose advice (import the base first) fails with
 * SnapshotExists. A full stream carrying the block then writes it again, counted as repaired, not
 * as new room taken.
 */
import t from 'tap';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ImportResult } from '../../src/engine/offsite-types';
import { engineWithSnapshot, finished, secondEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';

const BS = 64 * 1024;

t.test('an incremental import relying on a block this store lost is BlockMissing, and a full stream repairs it', async (t) => {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 's1' });
  fillBlock(a.img, 3, BS, 'vm-3');
  const s2 = await snapshot(a.engine, 'vm', 's2');
  const streams = { s1: 's1.bsnap', s2inc: 's2-inc.bsnap', s2full: 's2-full.bsnap' };
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', join(a.images, streams.s1)));
  await finished(a.engine, a.engine.offsite.streams.startExport('s2', join(a.images, streams.s2inc), { base: 's1' }));
  await finished(a.engine, a.engine.offsite.streams.startExport('s2', join(a.images, streams.s2full)));
  const b = await secondEngine(t, a, BS);
  for (const f of Object.values(streams)) copyFileSync(join(a.images, f), join(b.images, f));
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 4 * BS) });
  const importIt = (f: string) => b.engine.waitJob(b.engine.offsite.streams.startImport(join(b.images, f), disk.id).id);
  t.equal((await importIt(streams.s1)).state, 'succeeded');

  const lost = sha(pattern('vm-0', BS));
  rmSync(blockPath(b.dataDir, lost));
  const refused = await importIt(streams.s2inc);
  t.match(refused.error, { code: 'BlockMissing', message: new RegExp(`block ${lost} is missing from the store, though snapshots here reference it: .*import a full stream of a snapshot that carries it`) });
  t.throws(() => b.engine.getSnapshot(s2.id), { code: 'SnapshotNotFound' }, 'nothing committed');

  const full = await importIt(streams.s2full);
  t.match(full.result as ImportResult, { repairedBlocks: 1, storedBlocks: 1, storedBytes: BS }, 'the lost block is repaired; only block 3 is new');
  t.equal(sha(readFileSync(blockPath(b.dataDir, lost)).subarray(64)), lost, 'the block file is whole again');
});
