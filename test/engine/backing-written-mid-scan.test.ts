/**
 * A snapshot's consistency covers every file its scan reads, not only the top image: a QEMU
 * process holding a backing file for writing, or a backing file that changes during the scan,
 * makes the snapshot `crash`-consistent. And a scan of a chain written meanwhile that finds its
 * qcow2 tables malformed fails with ImageChanged (take it again), not ImageCorrupt, whose remedy
 * (a repair) must never run on a running VM's image.
 */
import { mkdtempSync, openSync, readSync, closeSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { scanImage } from '../../src/native';
import { openEngine, snapshot } from '../helpers/engine';
import { haveQemu, holdWithNbd, qemuImg, qemuIo } from '../helpers/qemu';

const missing = haveQemu();
if (missing) t.plan(0, missing);

/** Test hook: `during` runs once the next scan has read the chain, before the engine commits it. */
function afterNextScan(t: Test, during: () => void): void {
  const native = require('../../src/native') as { scanImage: typeof scanImage };
  const real = native.scanImage;
  native.scanImage = async (o) => {
    native.scanImage = real;
    const r = await real(o);
    during();
    return r;
  };
  t.teardown(() => { native.scanImage = real; });
}

/** Test hook: `first` runs when the engine hands the next scan to the native code, after it stamped the chain. */
function beforeNextScan(t: Test, first: () => void): void {
  const native = require('../../src/native') as { scanImage: typeof scanImage };
  const real = native.scanImage;
  native.scanImage = (o) => {
    native.scanImage = real;
    first();
    return real(o);
  };
  t.teardown(() => { native.scanImage = real; });
}

/** base.qcow2 <- mid.qcow2 <- top.qcow2, each with data of its own. */
function chain(images: string): { base: string; mid: string; top: string } {
  const base = join(images, 'base.qcow2'), mid = join(images, 'mid.qcow2'), top = join(images, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '8M');
  qemuIo(base, 'qcow2', 'write -P 0x10 0 2M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid);
  qemuIo(mid, 'qcow2', 'write -P 0x20 2M 1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top);
  qemuIo(top, 'qcow2', 'write -P 0x30 0 64k');
  return { base, mid, top };
}

/** A Unix socket path must stay under 108 bytes: not in the test's deep fixture directory. */
function socketPath(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bs-nbd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'nbd.sock');
}

t.test('a backing file a QEMU process holds for writing makes the snapshot crash-consistent', async (t) => {
  const { engine, images } = await openEngine(t);
  const { mid, top } = chain(images);
  const disk = await engine.addDisk({ path: top, name: 'top' });
  t.equal((await snapshot(engine, disk.id, 'quiet')).consistency, 'offline', 'no QEMU process holds any file of the chain');
  const nbd = await holdWithNbd(mid, 'qcow2', socketPath(t));
  try {
    t.equal((await snapshot(engine, disk.id, 'held')).consistency, 'crash', 'qemu-nbd holds the middle of the chain');
  } finally {
    await nbd.stop();
  }
  t.equal((await snapshot(engine, disk.id, 'released')).consistency, 'offline', 'and once it is gone, offline again');
});

t.test('a backing file that changes during the scan makes the snapshot crash-consistent', async (t) => {
  const { engine, images } = await openEngine(t);
  const { base, top } = chain(images);
  const disk = await engine.addDisk({ path: top, name: 'top' });
  afterNextScan(t, () => qemuIo(base, 'qcow2', 'write -P 0x11 4M 1M'));
  t.equal((await snapshot(engine, disk.id, 'changed')).consistency, 'crash', 'the base at the end of the chain was written');
  t.equal((await snapshot(engine, disk.id, 'after')).consistency, 'offline', 'the next snapshot, with nothing written, is offline');
});

/** Points the L2 entry of guest cluster 1 of `img` (64 KiB clusters, cluster 0 allocated) far past the end of the file. */
function corruptSecondCluster(img: string): void {
  const fd = openSync(img, 'r+');
  try {
    const be64 = (at: number): bigint => {
      const b = Buffer.alloc(8);
      readSync(fd, b, 0, 8, at);
      return b.readBigUInt64BE(0);
    };
    const l1 = Number(be64(40));
    const l2 = Number(be64(l1) & 0x00fffffffffffe00n);
    const entry = Buffer.alloc(8);
    entry.writeBigUInt64BE((1n << 63n) | (1n << 40n));
    writeSync(fd, entry, 0, 8, l2 + 8);
  } finally {
    closeSync(fd);
  }
}

t.test('tables found malformed in a chain written during the scan: ImageChanged, else ImageCorrupt', async (t) => {
  const { engine, images } = await openEngine(t);

  const still = join(images, 'still.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', still, '8M');
  qemuIo(still, 'qcow2', 'write -P 0x40 0 64k');
  const stillDisk = await engine.addDisk({ path: still });
  corruptSecondCluster(still);
  const corrupt = await engine.waitJob(engine.startSnapshot(stillDisk.id).id);
  t.match(corrupt.error, { code: 'ImageCorrupt', message: /lies outside the file|lies beyond the end of the file/ }, 'nothing wrote it: corrupt');

  const { base, top } = chain(images);
  const held = await engine.addDisk({ path: top, name: 'top' });
  corruptSecondCluster(top);
  const nbd = await holdWithNbd(base, 'qcow2', socketPath(t));
  let whileHeld;
  try {
    whileHeld = await engine.waitJob(engine.startSnapshot(held.id, { name: 'held' }).id);
  } finally {
    await nbd.stop();
  }
  t.match(whileHeld.error, {
    code: 'ImageChanged',
    message: /top\.qcow2 or a backing file of it was written while the snapshot read it.*lies beyond the end of the file.*take the snapshot again.*qemu-img check -U/,
  }, 'a QEMU process held a backing file for writing: the tables may have changed under the scan');
  t.match(engine.listSnapshots(held.id), [{ name: 'held', status: 'error', error: { code: 'ImageChanged' } }]);

  const grown = join(images, 'grown.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', grown, '8M');
  qemuIo(grown, 'qcow2', 'write -P 0x50 0 64k');
  const grownDisk = await engine.addDisk({ path: grown });
  // Written after the stamps were taken, as a writer would between them; the file grows, so the
  // stamp differs whatever the clock's resolution.
  beforeNextScan(t, () => {
    corruptSecondCluster(grown);
    truncateSync(grown, statSync(grown).size + 65536);
  });
  const changed = await engine.waitJob(engine.startSnapshot(grownDisk.id).id);
  t.match(changed.error, { code: 'ImageChanged', message: /grown\.qcow2 was written while the snapshot read it/ }, 'the image changed during the scan');
});
