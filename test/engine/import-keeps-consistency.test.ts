/**
 * A snapshot brought in from a stream or a remote keeps the consistency it was taken with. Without
 * it the imported snapshot read `consistency: null`, which the protocol keeps for snapshots
 * recorded before the field existed. The snapshot here is a copy-on-write disk's: `point-in-time`.
 */
import t from 'tap';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../../src/engine';
import type { Snapshot } from '../../src/engine/types';
import { engineWithSnapshot, finished, secondEngine, snapshot } from '../helpers/engine';
import { makeImage } from '../helpers/images';
import { MemoryStore } from '../remote/memory-store';
import { openHost, replicate } from '../remote/memory-engine';

const BS = 64 * 1024;

/** A point-in-time snapshot: the first one of a copy-on-write clone of `base`. */
async function pointInTime(engine: Engine): Promise<Snapshot> {
  await engine.cloneCow('base', 'c');
  return snapshot(engine, 'c', 'pit');
}

t.test('a stream import keeps the snapshot\'s consistency', async (t) => {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 2, filled: 1, disk: 'vm', snapshot: 'base' });
  const s = await pointInTime(a.engine);
  t.equal(s.consistency, 'point-in-time');
  await finished(a.engine, a.engine.offsite.streams.startExport(s.id, join(a.images, 's.bsnap')));
  const b = await secondEngine(t, a, BS);
  copyFileSync(join(a.images, 's.bsnap'), join(b.images, 's.bsnap'));
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 2 * BS) });
  await finished(b.engine, b.engine.offsite.streams.startImport(join(b.images, 's.bsnap'), disk.id));
  t.equal(b.engine.getSnapshot(s.id).consistency, 'point-in-time');
});

t.test('an import from a remote keeps the snapshot\'s consistency', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  await a.disk('vm', 2);
  await snapshot(a.engine, 'vm', 'base');
  const s = await pointInTime(a.engine);
  await replicate(a, s.id);
  const b = await openHost(t, shared);
  const disk = await b.disk('other', 2);
  await finished(b.engine, b.engine.offsite.remoteRestore.startImport('off', s.id, disk.id));
  t.equal(b.engine.getSnapshot(s.id).consistency, 'point-in-time');
});
