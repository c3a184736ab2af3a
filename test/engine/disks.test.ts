import t from 'tap';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
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

t.test('a block device inside an image root is refused, saying block devices are not supported yet', {
  skip: process.getuid?.() === 0 ? false : 'making a device node needs root',
}, async (t) => {
  const { engine, images } = await openEngine(t);
  const dev = join(images, 'lv');
  // A node of loop device 7:5; nothing opens it.
  t.equal(spawnSync('mknod', [dev, 'b', '7', '5']).status, 0, 'mknod');
  await t.rejects(engine.addDisk({ path: dev }), {
    code: 'NotAnImage',
    message: `${dev} is a block device, and blocksnap does not support block devices (LVM volumes, partitions, loop devices) yet: it takes raw and qcow2 image files only`,
  });
});

t.test('a path with a name over the filesystem limit is an invalid argument, not an internal error', async (t) => {
  const { engine, images } = await openEngine(t);
  const long = join(images, `${'n'.repeat(300)}.raw`);
  await t.rejects(engine.addDisk({ path: long }), { code: 'InvalidArgument', message: /path is too long/ });
  const disk = await engine.addDisk({ path: makeImage(join(images, 'a.raw'), 65536) });
  await snapshot(engine, disk.id, 'base');
  t.throws(() => engine.startClone('base', long), { code: 'InvalidArgument', message: /path is too long/ });
});

t.test('a path through a regular file says which part is not a directory', async (t) => {
  const { engine, images } = await openEngine(t);
  const disk = await engine.addDisk({ path: makeImage(join(images, 'vm1.raw'), 65536) });
  await snapshot(engine, disk.id, 'base');
  const through = join(images, 'vm1.raw', 'x.raw');
  t.throws(() => engine.startClone('base', through), { code: 'ImageNotFound', message: /vm1\.raw is not a directory/ });
  await t.rejects(engine.addDisk({ path: through }), { code: 'ImageNotFound', message: /vm1\.raw is not a directory/ });
});

t.test('an image root or data dir that is not a directory is refused at open', async (t) => {
  const dir = t.testdir({ afile: '', images: {} });
  const images = join(dir, 'images');
  await t.rejects(Engine.open({ dataDir: join(dir, 'data'), imageRoots: [join(dir, 'afile')] }),
    { code: 'InvalidArgument', message: /image root .*afile is not a directory/ });
  await t.rejects(Engine.open({ dataDir: join(dir, 'data'), imageRoots: [join(dir, 'missing')] }),
    { code: 'InvalidArgument', message: /image root .*missing does not exist/ });
  await t.rejects(Engine.open({ dataDir: join(dir, 'afile'), imageRoots: [images] }),
    { code: 'InvalidArgument', message: /data directory .*afile is not a directory/ });
  await t.rejects(Engine.open({ dataDir: join(dir, 'afile', 'data'), imageRoots: [images] }),
    { code: 'InvalidArgument', message: /afile is not a directory/ });
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

t.test('a hard link to a registered image is the same disk, not a new one', async (t) => {
  const { engine, images } = await openEngine(t);
  const a = await engine.addDisk({ path: makeImage(join(images, 'a.raw'), 65536), name: 'vm1' });
  linkSync(join(images, 'a.raw'), join(images, 'a-link.raw'));
  await t.rejects(engine.addDisk({ path: join(images, 'a-link.raw') }),
    { code: 'DiskAlreadyRegistered', details: { diskId: a.id }, message: /disk vm1 \(.*a\.raw is the same file\)/ });
  t.equal(engine.listDisks().length, 1, 'no second disk on the file');
});

t.test('two disks whose images became one file by a later hard link never run jobs on it at once', async (t) => {
  const { engine, images } = await openEngine(t);
  const a = await engine.addDisk({ path: makeImage(join(images, 'a.raw'), 4 << 20), name: 'vm1' });
  const b = await engine.addDisk({ path: makeImage(join(images, 'b.raw'), 4 << 20), name: 'vm2' });
  // Registration refuses a link; one put in place of an image afterwards is only seen at job start.
  unlinkSync(join(images, 'b.raw'));
  linkSync(join(images, 'a.raw'), join(images, 'b.raw'));
  const job = engine.startSnapshot(a.id);
  t.throws(() => engine.startSnapshot(b.id), { code: 'DiskBusy', details: { diskId: b.id, jobId: job.id, sameFileAs: a.id } });
  await engine.waitJob(job.id);
  const second = engine.startSnapshot(b.id);
  t.equal((await engine.waitJob(second.id)).state, 'succeeded', 'once the first job ends the file is free');
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
