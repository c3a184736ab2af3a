/**
 * A qcow2 rollback writes a new image from the snapshot alone, so what the image holds besides
 * the guest's content must be refused or kept: persistent dirty bitmaps (`qemu-img bitmap`,
 * libvirt's incremental backups) would be dropped, so such a rollback is refused untouched; the
 * compression type the image was created with is kept. The new image takes one name only, so an
 * image with other names (hard links) is refused too. Judged by qemu-img on real files.
 */
import t, { type Test } from 'tap';
import { closeSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { check, compare, haveQemu, info, qemuImg, qemuIo, run } from '../helpers/qemu';
import type { CloneResult } from '../../src/engine/types';

const missing = haveQemu();
if (missing) t.plan(0, missing);

interface Qcow2Specific { 'compression-type'?: string; 'refcount-bits'?: number; bitmaps?: Array<{ name: string }> }

function specific(img: string): Qcow2Specific {
  return (info(img)['format-specific'] as { data: Qcow2Specific }).data;
}

function bitmapNames(img: string): string[] {
  return (specific(img).bitmaps ?? []).map((b) => b.name);
}

/**
 * A qcow2 disk (made by qemu-img with `options`, written by qemu-io) with a snapshot, and a raw
 * clone of that snapshot to compare the disk with after a rollback.
 */
async function snapshotted(t: Test, options: string[] = []) {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'disk.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', ...options, img, '8M');
  qemuIo(img, 'qcow2', 'write -P 1 0 2M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id, 'base');
  const want = (await finished(engine, engine.startClone(snap.id, join(images, 'want.raw'), { format: 'raw' }))).result as CloneResult;
  return { engine, img, disk, snap, want };
}

type Snapshotted = Awaited<ReturnType<typeof snapshotted>>;

async function rollsBack(t: Test, { engine, img, disk, snap, want }: Snapshotted): Promise<void> {
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(compare(img, 'qcow2', want.path, 'raw').status, 0, 'the disk reads as the snapshot');
  t.equal(check(img).status, 0, 'qemu-img check clean');
}

t.test('rollback of an image with a persistent bitmap is refused and leaves the image byte for byte', async (t) => {
  const { engine, img, disk, snap } = await snapshotted(t);
  qemuImg('bitmap', '--add', img, 'backup-inc0');
  qemuIo(img, 'qcow2', 'write -P 2 0 1M');
  const before = readFileSync(img);

  t.throws(() => engine.startRollback(disk.id, snap.id), {
    code: 'ImageHasBitmaps',
    message: new RegExp(`${img} holds 1 persistent dirty bitmap.*qemu-img bitmap --remove ${img} NAME`),
    details: { path: img, bitmaps: 1 },
  });
  t.ok(readFileSync(img).equals(before), 'the image is byte-identical');
  t.same(bitmapNames(img), ['backup-inc0'], 'qemu-img still sees the bitmap');
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing was journaled');
});

t.test('once the bitmaps are removed, the rollback proceeds', async (t) => {
  const d = await snapshotted(t);
  qemuImg('bitmap', '--add', d.img, 'backup-inc0');
  qemuImg('bitmap', '--add', d.img, 'backup-inc1');
  qemuIo(d.img, 'qcow2', 'write -P 2 0 1M');
  t.throws(() => d.engine.startRollback(d.disk.id, d.snap.id), { code: 'ImageHasBitmaps', details: { bitmaps: 2 } });

  qemuImg('bitmap', '--remove', d.img, 'backup-inc0');
  qemuImg('bitmap', '--remove', d.img, 'backup-inc1');
  await rollsBack(t, d);
});

t.test('a bitmaps extension QEMU ignores (autoclear bit 0 cleared by a program without bitmap support) does not refuse the rollback', async (t) => {
  const d = await snapshotted(t);
  qemuImg('bitmap', '--add', d.img, 'stale');
  // Autoclear bit 0 is the lowest bit of the big-endian field at bytes 88-95.
  const byte = readFileSync(d.img).subarray(95, 96);
  t.equal(byte[0]! & 1, 1, 'qemu-img set the bitmaps autoclear bit');
  const fd = openSync(d.img, 'r+');
  writeSync(fd, Buffer.from([byte[0]! & ~1]), 0, 1, 95);
  closeSync(fd);
  t.same(bitmapNames(d.img), [], 'qemu-img reports no bitmap: it considers the extension inconsistent');
  await rollsBack(t, d);
});

t.test('a rollback keeps the compression type (zstd) of an image without compressed clusters', async (t) => {
  const probe = run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', join(t.testdir(), 'probe.qcow2'), '1M']);
  if (probe.status !== 0) return t.plan(0, `this qemu-img cannot make zstd images: ${probe.stderr}`);
  const d = await snapshotted(t, ['-o', 'compression_type=zstd']);
  qemuIo(d.img, 'qcow2', 'write -P 2 0 1M');
  await rollsBack(t, d);
  t.equal(specific(d.img)['compression-type'], 'zstd', 'still zstd');
});

t.test('rollback of a hard-linked image is refused: the other name would keep the old content', async (t) => {
  const d = await snapshotted(t);
  const other = join(dirname(d.img), 'vm-by-another-name.qcow2');
  linkSync(d.img, other);
  qemuIo(d.img, 'qcow2', 'write -P 2 0 1M');
  const before = readFileSync(d.img);

  t.throws(() => d.engine.startRollback(d.disk.id, d.snap.id), {
    code: 'ImageHasHardLinks',
    message: new RegExp(`${d.img} has 2 names \\(hard links\\).*-samefile ${d.img}`),
    details: { path: d.img, links: 2 },
  });
  t.ok(readFileSync(d.img).equals(before), 'the image is byte-identical');
  t.equal(d.engine.getDisk(d.disk.id).pendingRollback, null, 'nothing was journaled');

  unlinkSync(other);
  await rollsBack(t, d);
});
