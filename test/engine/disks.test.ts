import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import { openEngine, snapshot } from '../helpers/engine';
import { makeImage } from '../helpers/images';
import { Catalog } from '../../src/catalog/catalog';

t.test('a disk is registered with its real path, size and a default name', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'web 01.raw'), 3 * 1024 * 1024);
  const disk = await engine.addDisk({ path: img });
  t.match(disk, { name: 'web_01.raw', path: img, format: 'raw', sizeBytes: 3 * 1024 * 1024, snapshotCount: 0 });
  t.match(disk.id, /^d-[0-9a-f]{16}$/);
  t.same(engine.getDisk('web_01.raw'), disk, 'found by name');
});

t.test('bad paths are refused with their codes', async (t) => {
  const { engine, images } = await openEngine(t);
  await t.rejects(engine.addDisk({ path: join(images, 'missing.raw') }), { code: 'ImageNotFound' });
  mkdirSync(join(images, 'dir'));
  await t.rejects(engine.addDisk({ path: join(images, 'dir') }), { code: 'NotAnImage' });
  await t.rejects(engine.addDisk({ path: '/etc/passwd' }), { code: 'PathNotAllowed' });
  await t.rejects(engine.addDisk({ path: join(images, '..', '..', 'x.raw') }), { code: 'PathNotAllowed' });
  symlinkSync('/etc/passwd', join(images, 'escape.raw'));
  await t.rejects(engine.addDisk({ path: join(images, 'escape.raw') }), { code: 'PathNotAllowed' });
  await t.rejects(engine.addDisk({ path: 'relative.raw' }), { code: 'InvalidArgument' });
});

t.test('a file with the qcow2 magic is read as qcow2: a bad header is refused, a future version unsupported', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'q.qcow2');
  writeFileSync(img, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(508)]));
  await t.rejects(engine.addDisk({ path: img }), { code: 'ImageCorrupt' });
  writeFileSync(img, Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 4]), Buffer.alloc(504)]));
  await t.rejects(engine.addDisk({ path: img }), { code: 'UnsupportedFormat' });
  t.match(await engine.addDisk({ path: img, format: 'raw' }), { format: 'raw', sizeBytes: 512 }, 'registered as raw when asked');
});

t.test('names are validated and unique', async (t) => {
  const { engine, images } = await openEngine(t);
  const a = await engine.addDisk({ path: makeImage(join(images, 'a.raw'), 65536), name: 'vm1' });
  await t.rejects(engine.addDisk({ path: makeImage(join(images, 'b.raw'), 65536), name: 'vm1' }), { code: 'NameTaken' });
  await t.rejects(engine.addDisk({ path: join(images, 'b.raw'), name: 'bad/name' }), { code: 'InvalidName' });
  await t.rejects(engine.addDisk({ path: join(images, 'a.raw') }), { code: 'DiskAlreadyRegistered' });
  t.throws(() => engine.startSnapshot(a.id, { name: 'auto-daily' }), { code: 'InvalidName' });
  t.throws(() => engine.startSnapshot(a.id, { name: 'x'.repeat(129) }), { code: 'InvalidName' });
  await snapshot(engine, a.id, 'first');
  t.throws(() => engine.startSnapshot(a.id, { name: 'first' }), { code: 'NameTaken' });
});

t.test('a second engine on the same data dir is refused', async (t) => {
  const { dataDir, images } = await openEngine(t);
  await t.rejects(Engine.open({ dataDir, imageRoots: [images] }), { code: 'DataDirLocked' });
});

t.test('reopening turns a snapshot left creating into error', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  const e1 = await Engine.open({ dataDir, imageRoots: [images] });
  const disk = await e1.addDisk({ path: makeImage(join(images, 'x.raw'), 65536) });
  await e1.close();
  const c = Catalog.open(dataDir, 4 << 20);
  c.txn(() => c.putSnapshot({
    id: 's-00000000000000aa', diskId: disk.id, name: 'half', description: '', status: 'creating', type: 'manual', parentId: null,
    createdAt: new Date().toISOString(), completedAt: null, sizeBytes: 0, blockSize: 4 << 20, blockCount: 0,
    logicalBytes: 0, changedBlocks: 0, newBytes: 0, error: null, jobId: null,
  }));
  await c.close();
  const e2 = await Engine.open({ dataDir, imageRoots: [images] });
  t.teardown(() => e2.close());
  t.match(e2.getSnapshot('s-00000000000000aa'), { status: 'error', error: { code: 'Interrupted' } });
});
