/**
 * A block file of this host truncated (or grown) by damage the daemon has not yet met: a stream
 * that carries the block writes it again over the file, as a snapshot would, and the snapshot it
 * commits reads back whole; an incremental stream that relies on the file fails BlockCorrupt
 * naming it, the store's damage, rather than StreamCorrupt, which would send the operator after a
 * stream that is fine.
 */
import t, { type Test } from 'tap';
import { copyFileSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import type { Catalog } from '../../src/catalog/catalog';
import type { DamagedBlocks } from '../../src/catalog/damaged-blocks';
import type { Engine } from '../../src/engine';
import type { ImportResult } from '../../src/engine/offsite-types';
import type { VerifyResult } from '../../src/engine/types';
import { engineWithSnapshot, finished, secondEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';

const BS = 64 * 1024;

/**
 * Host a: disk vm with s1, then s2 (block 3 added); streams of s1, of s2 and of s2 over s1. Host
 * b: s1 imported, then the file of block 0 (which s2 shares) cut to 4096 bytes.
 */
async function damagedHost(t: Test) {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 's1' });
  fillBlock(a.img, 3, BS, 'vm-3');
  const s2 = await snapshot(a.engine, 'vm', 's2');
  const streams = { s1: 's1.bsnap', s2full: 's2-full.bsnap', s2inc: 's2-inc.bsnap' };
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', join(a.images, streams.s1)));
  await finished(a.engine, a.engine.offsite.streams.startExport('s2', join(a.images, streams.s2full)));
  await finished(a.engine, a.engine.offsite.streams.startExport('s2', join(a.images, streams.s2inc), { base: 's1' }));
  const b = await secondEngine(t, a, BS);
  for (const f of Object.values(streams)) copyFileSync(join(a.images, f), join(b.images, f));
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 4 * BS) });
  const importIt = (f: string) => b.engine.waitJob(b.engine.offsite.streams.startImport(join(b.images, f), disk.id).id);
  t.equal((await importIt(streams.s1)).state, 'succeeded');
  const hex = sha(pattern('vm-0', BS));
  const file = blockPath(b.dataDir, hex);
  truncateSync(file, 4096);
  return { a, b, s2, streams, importIt, hex, file };
}

function damagedList(engine: Engine): DamagedBlocks {
  return (engine as unknown as { repair: { damaged: DamagedBlocks }; catalog: Catalog }).repair.damaged;
}

t.test('a stream that carries a block whose file here has the wrong size writes it again, and its snapshot reads whole', async (t) => {
  const { a, b, s2, streams, importIt, hex, file } = await damagedHost(t);
  const done = await importIt(streams.s2full);
  t.equal(done.state, 'succeeded');
  t.match(done.result as ImportResult, { repairedBlocks: 1, storedBlocks: 1, presentBlocks: 1 }, 'block 0 repaired, block 3 new, block 1 here');
  t.equal(sha(readFileSync(file).subarray(64)), hex, 'the block file is whole again');
  t.notOk(damagedList(b.engine).has(Buffer.from(hex, 'hex')), 'the commit forgot the mark the rewrite made');
  const clone = join(b.images, 'c.raw');
  await finished(b.engine, b.engine.startClone(s2.id, clone));
  t.ok(readFileSync(clone).equals(readFileSync(a.img)), 'the clone is the image snapshotted');
  const v = (await finished(b.engine, b.engine.startVerify())).result as VerifyResult;
  t.same(v.problems, []);
  t.equal(v.awaitingRepair, 0);
});

t.test('an incremental stream that relies on a block whose file here has the wrong size is BlockCorrupt naming the file', async (t) => {
  const { b, s2, streams, importIt, hex, file } = await damagedHost(t);
  const refused = await importIt(streams.s2inc);
  t.equal(refused.state, 'failed');
  t.match(refused.error, {
    code: 'BlockCorrupt',
    message: `block ${hex} is damaged in the store: its file ${file} has 4096 bytes where a block of ${BS} bytes takes ${BS + 64}, ` +
      'and the import did not carry it (this host had it). The block is recorded for repair. `blocksnap store verify` names the damaged block',
  });
  t.throws(() => b.engine.getSnapshot(s2.id), { code: 'SnapshotNotFound' }, 'nothing committed');
  t.ok(damagedList(b.engine).has(Buffer.from(hex, 'hex')), 'recorded for repair');
});
