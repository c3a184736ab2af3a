/**
 * A filesystem that keeps no space figures (ramfs, tmpfs with size=0, many FUSE filesystems:
 * statfs gives 0 blocks in all) is unlimited, not full. Read as "0 B free", it had a new data dir
 * refused with NoSpace, every catalog change once catalog.mdb's room was used, and a qcow2
 * rollback of an image there. Mounting needs root: the tests skip, saying so, without it.
 */
import { join } from 'node:path';
import t from 'tap';
import { fsSpace } from '../../src/catalog/write-errors';
import { Engine } from '../../src/engine';
import { finished, snapshot } from '../helpers/engine';
import { MiB, makeImage, pattern, writeAt } from '../helpers/images';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { mountedOrSkip } from './small-fs';

t.test('its space is not read as figures', async (t) => {
  const fs = mountedOrSkip(t, 'bsu-', 'unaccounted');
  if (fs === null) return;
  t.equal(fsSpace(fs.dir), null);
});

t.test('a new data dir there takes disks and snapshots', async (t) => {
  const fs = mountedOrSkip(t, 'bsu-', 'unaccounted');
  if (fs === null) return;
  // The catalog keeps no room on such a filesystem, so every commit here passes admission with
  // nothing but the filesystem's figures to go by.
  const engine = await Engine.open({ dataDir: join(fs.dir, 'data'), imageRoots: [fs.dir], blockSize: 64 * 1024 });
  t.teardown(() => engine.close());
  const img = makeImage(join(fs.dir, 'vm.raw'), 4 * MiB);
  writeAt(img, 0, pattern('data', MiB));
  const disk = await engine.addDisk({ path: img });
  t.equal((await snapshot(engine, disk.id)).status, 'available');
});

t.test('a qcow2 rollback of an image there runs', { skip: haveQemu() }, async (t) => {
  const fs = mountedOrSkip(t, 'bsu-', 'unaccounted');
  if (fs === null) return;
  const engine = await Engine.open({ dataDir: join(fs.tempDir, 'data'), imageRoots: [fs.dir], blockSize: 64 * 1024 });
  t.teardown(() => engine.close());
  const img = join(fs.dir, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '16M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 4M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = join(fs.tempDir, 'want.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, want);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 4M');
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(compare(img, 'qcow2', want, 'raw').status, 0, 'the disk holds the snapshot again');
});
