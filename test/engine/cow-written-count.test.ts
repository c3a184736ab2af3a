/**
 * The written count of a copy-on-write disk (`disk show`'s written, DiskHasWrites) costs no pass
 * over its layer maps per listing, since a map is 32 MiB of bits per TiB: an open volume keeps
 * the count as it sets bits, a closed disk keeps the count its volume closed with or the one
 * counted at start, and a count from the files skips their holes. Each test below proves which
 * of these answered by making the files unreadable where the answer must not come from them.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import type { CowVolumes } from '../../src/engine/cow-volumes';
import { countWrittenBytes, countWrittenBytesNow } from '../../src/native/volume';
import { served } from '../helpers/cow';
import { engineWithSnapshot, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';

const BS = 64 * 1024;

async function clone(t: Parameters<typeof engineWithSnapshot>[0]) {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  const d = await f.engine.cloneCow('base', 'c');
  const maps = (): string[] => f.engine.getDisk('c').cow!.layers.map((l) => join(d.path, `${l}.map`));
  const spoil = (): void => { for (const m of maps()) writeFileSync(m, 'not a map'); };
  return { ...f, d, maps, spoil };
}

t.test('a fresh clone has written nothing, counted from its clear maps', async (t) => {
  const f = await clone(t);
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 0);
  t.equal(await countWrittenBytes(f.maps(), f.d.sizeBytes), 0);
});

t.test('a served disk\'s count is its volume\'s, writes not flushed yet included', async (t) => {
  const f = await clone(t);
  const b = await served(f.engine, 'c');
  await b.write!(BS, pattern('unflushed', 8192), false);
  await b.trim!(2 * BS, 4096, false);
  t.equal(countWrittenBytesNow(f.maps(), f.d.sizeBytes), 0, 'the files hold no bit yet');
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 8192 + 4096, 'the volume counted them as it set them');
  f.spoil();
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 8192 + 4096, 'the files are not read while the volume is open');
});

t.test('a closed disk keeps the count its volume closed with: the listing reads no map', async (t) => {
  const f = await clone(t);
  const b = await served(f.engine, 'c');
  await b.write!(BS, pattern('saved', 8192), false);
  await f.engine.exports.stop('c');
  t.equal(countWrittenBytesNow(f.maps(), f.d.sizeBytes), 8192, 'the close flushed the bits');
  f.spoil();
  t.match(f.engine.getDisk('c'), { cow: { writtenBytes: 8192 } });
  await t.rejects(f.engine.removeDisk('c'), { code: 'DiskHasWrites', details: { writtenBytes: 8192 } });
});

t.test('a snapshot through the volume leaves the count of the layer that stays', async (t) => {
  const f = await clone(t);
  const b = await served(f.engine, 'c');
  await b.write!(0, pattern('one', 4096), true);
  await snapshot(f.engine, 'c', 's1');
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 0, 'the writes are in the snapshot now');
  await b.write!(3 * BS, pattern('two', 4096), true);
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 4096);
  await f.engine.exports.stop('c');
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 4096);
  t.equal(countWrittenBytesNow(f.maps(), f.d.sizeBytes), 4096);
});

t.test('after a restart each COW disk is counted once off the event loop, before listings ask', async (t) => {
  const f = await clone(t);
  const b = await served(f.engine, 'c');
  await b.write!(BS, pattern('kept', 3 * 4096), false);
  await f.engine.exports.stop('c');
  const maps = f.maps();
  await f.engine.close();
  const engine = await Engine.open({ dataDir: f.dataDir, imageRoots: [f.images], blockSize: BS });
  t.teardown(() => engine.close());
  await (engine as unknown as { volumes: CowVolumes }).volumes.idle();
  for (const m of maps) writeFileSync(m, 'not a map');
  t.equal(engine.getDisk('c').cow!.writtenBytes, 3 * 4096, 'counted at start, not now from the spoilt files');
});

t.test('a disk whose count was never kept is counted from its files, once', async (t) => {
  const f = await clone(t);
  const b = await served(f.engine, 'c');
  await b.write!(BS, pattern('x', 4096), false);
  await f.engine.exports.stop('c');
  const volumes = (f.engine as unknown as { volumes: { written: Map<string, unknown> } }).volumes;
  volumes.written.clear();
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 4096, 'from the files');
  f.spoil();
  t.equal(f.engine.getDisk('c').cow!.writtenBytes, 4096, 'then kept');
});
