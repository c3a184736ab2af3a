import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import { Volume } from '../../src/native/volume';
import type { Snapshot } from '../../src/engine/types';
import { cloned, readAll, served } from '../helpers/cow';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';

const BS = 64 * 1024;
const BLOCKS = 8;

/** A disk of 8 blocks with data in blocks 0, 2 and 5, snapshotted as "base". */
async function origin(t: Parameters<typeof openEngine>[0]) {
  const f = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(f.images, 'a.raw'), BLOCKS * BS);
  for (const i of [0, 2, 5]) fillBlock(img, i, BS, `base-${i}`);
  const disk = await f.engine.addDisk({ path: img, name: 'a' });
  const base = await snapshot(f.engine, disk.id, 'base');
  return { ...f, img, disk, base, content: readFileSync(img) };
}

t.test('clone --cow is a new disk of format cow over the snapshot, reading exactly as the snapshot', async (t) => {
  const { engine, base, content, dataDir } = await origin(t);
  const d = await engine.cloneCow('base', 'c');
  t.match(d, { name: 'c', format: 'cow', sizeBytes: BLOCKS * BS, headSnapshotId: null, snapshotCount: 0 });
  t.match(d.cow, { originSnapshotId: base.id, baseSnapshotId: base.id, overlayBytes: 0 });
  t.equal(d.cow!.layers.length, 1, 'one empty layer');
  t.equal(d.path, join(dataDir, 'cow', d.id));
  t.same(readdirSync(d.path).sort(), [`${d.cow!.layers[0]}.data`, `${d.cow!.layers[0]}.map`]);
  t.ok((await readAll(await served(engine, 'c'))).equals(content), 'reads equal the base');
  await t.rejects(engine.cloneCow('base', 'c'), { code: 'NameTaken' });
});

t.test('the layers a snapshot or rollback of a COW disk folds in are removed once the engine is idle', async (t) => {
  const { engine } = await origin(t);
  const d = await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  await b.write!(BS, pattern('w', 4096), true);
  const files = (): string[] => readdirSync(d.path).sort();
  const layerFiles = (): string[] => engine.getDisk('c').cow!.layers.flatMap((l) => [`${l}.data`, `${l}.map`]).sort();
  const s1 = await snapshot(engine, 'c', 'one');
  await engine.idle();
  t.same(files(), layerFiles(), 'after the snapshot: only the listed layer');
  await b.write!(2 * BS, pattern('x', 4096), true);
  await finished(engine, engine.startRollback('c', s1.id, { force: true }));
  await engine.idle();
  t.same(files(), layerFiles(), 'after the rollback: only the listed layer');
});

t.test('a snapshot of a written COW disk holds the writes, is point-in-time, and becomes the base', async (t) => {
  const { engine, images, base, content } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  const expected = Buffer.from(content);
  const w1 = pattern('w1', 4096);
  await b.write!(BS + 100, w1, false);
  w1.copy(expected, BS + 100);
  await b.zero!(2 * BS, BS, true, false);
  expected.fill(0, 2 * BS, 3 * BS);
  const s1 = await snapshot(engine, 'c', 'one');
  t.equal(s1.consistency, 'point-in-time');
  t.equal(s1.parentId, null, 'the first snapshot of a clone is a root');
  t.ok((await cloned(engine, images, s1, 'one.raw')).equals(expected), 'the snapshot holds the writes and the base');
  t.match(engine.getDisk('c').cow, { baseSnapshotId: s1.id, originSnapshotId: base.id });
  t.equal(engine.getDisk('c').cow!.layers.length, 1, 'the frozen layer was merged into the new base');

  const w2 = pattern('w2', 3 * BS);
  await b.write!(4 * BS, w2, true);
  w2.copy(expected, 4 * BS);
  const s2 = await snapshot(engine, 'c', 'two');
  t.equal(s2.parentId, s1.id);
  t.equal(s2.changedBlocks, 3, 'only the three written blocks changed');
  t.ok((await cloned(engine, images, s2, 'two.raw')).equals(expected));
  t.ok((await readAll(b)).equals(expected), 'the served disk reads the same after the rebase');
});

t.test('a snapshot right after the export stops sees its unflushed writes (the volume reopens after it closed)', async (t) => {
  const { engine, images, content } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  const expected = Buffer.from(content);
  for (let i = 0; i < 32; i++) {
    const w = pattern(`u${i}`, 4096);
    await b.write!(i * 3 * 4096, w, false);
    w.copy(expected, i * 3 * 4096);
  }
  await engine.exports.stop('c');
  const s = await snapshot(engine, 'c', 'after-stop');
  t.ok((await cloned(engine, images, s, 'after.raw')).equals(expected));
});

t.test('requests go on while the instant flushes what came before it; what they wrote is in the snapshot', async (t) => {
  const { engine, images, content } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  const expected = Buffer.from(content);
  const before = pattern('before', 4096);
  await b.write!(BS, before, false);
  before.copy(expected, BS);
  // The first flush of the snapshot is the one before the pause: a write issued from inside it
  // would never finish if the flush held the I/O gate (the gate waits for the flush).
  const during = pattern('during', 4096);
  const flush = Volume.prototype.flush;
  t.teardown(() => { Volume.prototype.flush = flush; });
  let written = false;
  Volume.prototype.flush = async function (this: Volume) {
    if (!written) {
      written = true;
      let timer: NodeJS.Timeout | undefined;
      const held = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('a write was held by the flush before the instant')), 10_000); });
      try {
        await Promise.race([b.write!(3 * BS + 512, during, false), held]);
      } finally {
        clearTimeout(timer);
      }
    }
    return flush.call(this);
  };
  const s = await snapshot(engine, 'c', 'one');
  t.ok(written, 'the snapshot flushed before its pause');
  during.copy(expected, 3 * BS + 512);
  t.ok((await cloned(engine, images, s, 'one.raw')).equals(expected), 'writes acknowledged before the instant are in the snapshot');
});

t.test('the base of a COW disk cannot be deleted (SnapshotHasClones); its first snapshot frees the origin', async (t) => {
  const { engine } = await origin(t);
  await engine.cloneCow('base', 'c');
  await t.rejects(engine.deleteSnapshot('base'), { code: 'SnapshotHasClones' });
  await t.rejects(engine.removeDisk('a', { deleteSnapshots: true }), { code: 'SnapshotHasClones' });
  const s1 = await snapshot(engine, 'c', 'one');
  await t.rejects(engine.deleteSnapshot(s1.id), { code: 'SnapshotHasClones' }, 'the clone\'s own base is kept too');
  t.match(await engine.deleteSnapshot('base'), { name: 'base' }, 'the origin can go once the clone has its own base');
});

t.test('a group whose member is the base of a COW disk cannot be deleted', async (t) => {
  const { engine } = await origin(t);
  const { group, done } = engine.groups.create({ disks: ['a'], name: 'g' });
  await done;
  await engine.cloneCow(engine.groups.get(group.id).snapshotIds[0]!, 'c');
  t.throws(() => engine.groups.delete('g'), { code: 'SnapshotHasClones' });
  await engine.removeDisk('c');
  t.match(engine.groups.delete('g'), { name: 'g' });
});

t.test('retention skips the base of a COW disk', async (t) => {
  const { engine } = await origin(t);
  engine.policies.create({ name: 'now', hours: [0], retention: { keepLast: 1 } });
  engine.policies.bind('now', ['a']);
  const first = await engine.policies.run('now');
  await engine.cloneCow(first.disks[0]!.snapshotId!, 'c');
  const second = await engine.policies.run('now', new Date(Date.now() + 1000));
  t.same(second.disks[0]!.expired, [], 'the older automatic snapshot is kept: it is a base');
  t.equal(engine.listSnapshots('a').filter((s) => s.type === 'auto').length, 2);
});

t.test('quota eviction skips the base of a COW disk', async (t) => {
  const dir = t.testdir();
  const images = join(dir, 'images');
  mkdirSync(images);
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], blockSize: BS, snapshotQuota: { auto: 1 } });
  t.teardown(() => engine.close());
  const img = makeImage(join(images, 'a.raw'), BLOCKS * BS);
  fillBlock(img, 0, BS, 'x');
  await engine.addDisk({ path: img, name: 'a' });
  const first = (await finished(engine, engine.startSnapshot('a', { type: 'auto' }))).result as Snapshot;
  await engine.cloneCow(first.id, 'c');
  t.throws(() => engine.startSnapshot('a', { type: 'auto' }), { code: 'SnapshotQuotaExceeded' }, 'the only automatic snapshot is a base');
});

t.test('disk remove of a COW disk: refused while exported, then deletes its overlay files', async (t) => {
  const { engine } = await origin(t);
  const d = await engine.cloneCow('base', 'c');
  await served(engine, 'c');
  await t.rejects(engine.removeDisk('c'), { code: 'DiskExported' });
  await engine.exports.stop('c');
  await engine.removeDisk('c');
  t.notOk(existsSync(d.path), 'the overlay directory is gone');
  t.match(await engine.deleteSnapshot('base'), { name: 'base' }, 'the base is free again');
});

t.test('rollback of a COW disk is instant and reads as the target', async (t) => {
  const { engine, content } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  const s1 = await snapshot(engine, 'c', 'one');
  await b.write!(0, pattern('later', 2 * BS), true);
  const old = engine.getDisk('c').cow!.layers;
  const job = await finished(engine, engine.startRollback('c', 'one'));
  t.match(job.result, { snapshotId: s1.id, blocksWritten: 0 });
  t.ok((await readAll(b)).equals(content), 'the disk reads as the snapshot again');
  const now = engine.getDisk('c');
  t.match(now, { headSnapshotId: s1.id, cow: { baseSnapshotId: s1.id } });
  t.notSame(now.cow!.layers, old, 'a fresh layer');
  t.same(readdirSync(now.path).sort(), [`${now.cow!.layers[0]}.data`, `${now.cow!.layers[0]}.map`], 'the old layers are gone');
});

t.test('a COW rollback\'s result counts the writes since the disk\'s base that it discarded', async (t) => {
  const { engine } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  const s1 = await snapshot(engine, 'c', 'one');
  await b.write!(0, pattern('later', 2 * BS), true);
  await b.write!(5 * BS, pattern('more', 4096), true);
  const written = engine.getDisk('c').cow!.writtenBytes;
  const first = await finished(engine, engine.startRollback('c', 'one', { force: true }));
  t.match(first.result, { discardedBytes: written, discardedSinceSnapshotId: s1.id }, 'what disk show counted as written');
  t.ok(written !== null && written >= 2 * BS + 4096);
  const again = await finished(engine, engine.startRollback('c', 'one', { force: true }));
  t.match(again.result, { discardedBytes: 0, discardedSinceSnapshotId: s1.id }, 'nothing written since the rollback');
});

t.test('flatten writes the COW disk as of its start to a raw image', async (t) => {
  const { engine, images, content } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  const expected = Buffer.from(content);
  const w = pattern('f', 10_000);
  await b.write!(7 * BS - 5000, w, false);
  w.copy(expected, 7 * BS - 5000);
  const path = join(images, 'flat.raw');
  const job = await finished(engine, engine.startFlatten('c', path));
  t.match(job.result, { path, format: 'raw', sizeBytes: BLOCKS * BS });
  t.ok(readFileSync(path).equals(expected));
  t.throws(() => engine.startFlatten('a', join(images, 'x.raw')), { code: 'NotCowDisk' });
});

t.test('at start, layer files the catalog does not list are removed', async (t) => {
  const dir = t.testdir();
  const images = join(dir, 'images');
  mkdirSync(images);
  const open = () => Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], blockSize: BS });
  let engine = await open();
  const img = makeImage(join(images, 'a.raw'), BLOCKS * BS);
  await engine.addDisk({ path: img, name: 'a' });
  await snapshot(engine, 'a', 'base');
  const d = await engine.cloneCow('base', 'c');
  await engine.close();
  writeFileSync(join(d.path, 'l-00000000000000ff.map'), 'left by a crash');
  mkdirSync(join(dir, 'data', 'cow', 'd-00000000000000ff'));
  engine = await open();
  t.teardown(() => engine.close());
  t.same(readdirSync(d.path).sort(), [`${d.cow!.layers[0]}.data`, `${d.cow!.layers[0]}.map`]);
  t.notOk(existsSync(join(dir, 'data', 'cow', 'd-00000000000000ff')));
});

t.test('a group of a file disk and a copy-on-write disk rolls both back', async (t) => {
  const { engine, img } = await origin(t);
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  await b.write!(0, pattern('c-before', 4096), true);
  const fileBefore = readFileSync(img);
  const cowBefore = await readAll(b);
  const g = await engine.groups.create({ disks: ['a', 'c'], name: 'g1' }).done;
  t.equal(g.status, 'available');
  fillBlock(img, 1, BS, 'a-after');
  await b.write!(2 * BS, pattern('c-after', 4096), true);
  const { jobs } = engine.groups.rollback('g1');
  for (const j of jobs) t.equal((await finished(engine, j)).state, 'succeeded');
  t.ok(readFileSync(img).equals(fileBefore), 'the file disk holds its member again');
  const again = engine.exports.lookup('c')!.backend;
  t.ok((await readAll(again)).equals(cowBefore), 'the copy-on-write disk reads as its member again');
});

t.test('deleting a group whose member a copy-on-write disk rests on says how to free it', async (t) => {
  const { engine } = await origin(t);
  await engine.cloneCow('base', 'c');
  await engine.groups.create({ disks: ['c'], name: 'g1' }).done;
  t.throws(() => engine.groups.delete('g1'), { code: 'SnapshotHasClones', message: /copy-on-write disk c; snapshot that disk/ });
  await snapshot(engine, 'c', 'moves-the-base');
  t.match(engine.groups.delete('g1'), { name: 'g1' }, 'deleted once the disk rests on another snapshot');
});
