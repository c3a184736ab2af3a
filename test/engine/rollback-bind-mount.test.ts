/**
 * A file bind mount (Firecracker's jailer, a container volume) is another name of an image that
 * no link count shows. A qcow2 rollback renames a new image over the disk's name: the mount would
 * keep the old file, and a mount point cannot be renamed over at all, so both are refused
 * (ImageBindMounted) before anything is written. A raw rollback writes in place, which the mount
 * sees, and is not refused. The mount table is read from /proc/self/mountinfo; the real mounts
 * need root.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { fileMounts, parseMountInfo } from '../../src/engine/bind-mounts';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { haveQemu, qemuImg, qemuIo, run } from '../helpers/qemu';

const MOUNTINFO = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '40 22 254:1 / /srv/my\\040images rw,relatime shared:2 - ext4 /dev/vdb rw',
  '41 22 254:1 /vm/root.qcow2 /jail/fc/root/rootfs.qcow2 rw,relatime shared:2 - ext4 /dev/vdb rw',
  '42 22 254:0 /tmp/other.qcow2 /tmp/mounted.qcow2 rw,relatime shared:1 - ext4 /dev/vda rw',
].join('\n');

t.test('a file bind-mounted elsewhere is found by its path inside its filesystem, with escaped names', async (t) => {
  const entries = parseMountInfo(MOUNTINFO);
  t.same(fileMounts('/srv/my images/vm/root.qcow2', entries), { mountPoint: false, elsewhere: ['/jail/fc/root/rootfs.qcow2'] });
  t.same(fileMounts('/vm/root.qcow2', entries), { mountPoint: false, elsewhere: [] }, 'the same path on another filesystem is another file');
});

t.test('a file that is itself a mount point is found as one', async (t) => {
  t.same(fileMounts('/tmp/mounted.qcow2', parseMountInfo(MOUNTINFO)), { mountPoint: true, elsewhere: [] });
});

/**
 * Runs `body` with `source` bind-mounted on a new empty file `target`, unmounted before the test
 * directory is removed; skips the test when this process may not mount.
 */
async function whileMounted(t: Test, source: string, target: string, body: () => Promise<void>): Promise<void> {
  closeSync(openSync(target, 'w'));
  if (run('mount', ['--bind', source, target]).status !== 0) return void t.plan(0, 'mount --bind is not permitted here');
  try {
    await body();
  } finally {
    run('umount', [target]);
  }
}

const missing = haveQemu();

/** An 8 MiB image `name` in `format` in `images`, written with 0x91. */
function writtenImage(images: string, name: string, format: 'raw' | 'qcow2'): string {
  const img = join(images, name);
  qemuImg('create', '-q', '-f', format, img, '8M');
  qemuIo(img, format, 'write -P 0x91 0 8M');
  return img;
}

t.test('rollback of a qcow2 image bind-mounted elsewhere is refused, naming the mount', { skip: missing }, async (t) => {
  const { engine, images } = await openEngine(t);
  const img = writtenImage(images, 's2.qcow2', 'qcow2');
  const jail = join(images, 'r2.qcow2');
  await whileMounted(t, img, jail, async () => {
    const disk = await engine.addDisk({ path: img });
    const k1 = await snapshot(engine, disk.id, 'k1');
    qemuIo(img, 'qcow2', 'write -P 0x92 0 8M');
    const before = readFileSync(img);
    t.throws(() => engine.startRollback(disk.id, k1.id), {
      code: 'ImageBindMounted',
      message: new RegExp(`${img} is bind-mounted on ${jail}, .*umount`),
      details: { path: img, mountedOn: [jail] },
    });
    t.ok(readFileSync(img).equals(before), 'the image is byte-identical');
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing was journaled');
  });
});

t.test('rollback of a qcow2 disk registered at a bind-mount point is refused before anything is written', { skip: missing }, async (t) => {
  const { engine, images } = await openEngine(t);
  const img = writtenImage(images, 'root.qcow2', 'qcow2');
  const jail = join(images, 'jail.qcow2');
  await whileMounted(t, img, jail, async () => {
    const disk = await engine.addDisk({ path: jail });
    const k1 = await snapshot(engine, disk.id, 'k1');
    t.throws(() => engine.startRollback(disk.id, k1.id), { code: 'ImageBindMounted', message: /is a mount point .*EBUSY/, details: { path: jail, mountPoint: true } });
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing was journaled');
  });
});

t.test('rollback of a raw image bind-mounted elsewhere goes through, and the mount sees it', { skip: missing }, async (t) => {
  const { engine, images } = await openEngine(t);
  const img = writtenImage(images, 'fc.raw', 'raw');
  const jail = join(images, 'rootfs.raw');
  await whileMounted(t, img, jail, async () => {
    const disk = await engine.addDisk({ path: img });
    const k1 = await snapshot(engine, disk.id, 'k1');
    const want = readFileSync(img);
    qemuIo(img, 'raw', 'write -P 0x92 0 8M');
    t.equal((await finished(engine, engine.startRollback(disk.id, k1.id))).state, 'succeeded');
    t.ok(readFileSync(jail).equals(want), 'the mounted view holds the snapshot');
  });
});
