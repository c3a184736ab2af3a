/**
 * An image resized while a snapshot scans it fails the snapshot (ImageResized) instead of
 * committing a disk of neither size: the scan takes the size once, at its start, so a shrunk
 * image read as zeros where it was cut (committed `available` before), and a grown one left its
 * new end out. The next snapshot takes the new size.
 */
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { scanImage } from '../../src/native';
import type { Snapshot } from '../../src/engine/types';
import { openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';
import { haveQemu, qemuImg, qemuIo } from '../helpers/qemu';

const BS = 64 * 1024;

/** Test hook: `resize` runs once the next scan has read the image, before the engine commits it. */
function resizeAfterNextScan(t: Test, resize: () => void): void {
  const native = require('../../src/native') as { scanImage: typeof scanImage };
  const real = native.scanImage;
  native.scanImage = async (o) => {
    native.scanImage = real;
    const r = await real(o);
    resize();
    return r;
  };
  t.teardown(() => { native.scanImage = real; });
}

t.test('a raw image shrunk during the scan fails the snapshot, and the next one takes the new size', async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'vm.raw'), 16 * BS);
  for (let i = 0; i < 16; i++) fillBlock(img, i, BS, `b${i}`);
  const disk = await engine.addDisk({ path: img });
  resizeAfterNextScan(t, () => truncateSync(img, 8 * BS));
  const done = await engine.waitJob(engine.startSnapshot(disk.id, { name: 'cut' }).id);
  t.equal(done.state, 'failed');
  t.match(done.error, { code: 'ImageResized', message: /changed size while the snapshot read it \(1048576 bytes at its start, 524288 now\).*take the snapshot again/ });
  t.match(engine.listSnapshots(disk.id), [{ name: 'cut', status: 'error', error: { code: 'ImageResized' } }], 'the snapshot is kept as failed, with why');
  const next = await snapshot(engine, disk.id, 'after');
  t.match(next, { status: 'available', sizeBytes: 8 * BS }, 'the next snapshot has the new size');
});

t.test('a qcow2 image grown during the scan fails the snapshot too', { skip: haveQemu() }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '1M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 1M');
  const disk = await engine.addDisk({ path: img });
  resizeAfterNextScan(t, () => qemuImg('resize', '-f', 'qcow2', img, '2M'));
  const done = await engine.waitJob(engine.startSnapshot(disk.id).id);
  t.match(done.error, { code: 'ImageResized', message: /\(1048576 bytes at its start, 2097152 now\)/ });
  const next: Snapshot = await snapshot(engine, disk.id);
  t.equal(next.sizeBytes, 2 * 1024 * 1024);
});
