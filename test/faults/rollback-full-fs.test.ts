/**
 * Rollbacks where the image's filesystem is in the way. On a full filesystem, one that needs no
 * more space than the image holds now must succeed: it punches before it writes (writing first,
 * it failed with NoSpace, and so did every rerun, the blocks it had to write coming first again,
 * leaving the disk unable to be rolled back or snapshotted until someone freed space by hand).
 * One that cannot write the image at all must fail before it is journaled, and so must a qcow2
 * one whose new image, written beside the disk before it replaces it, cannot fit there.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Catalog } from '../../src/catalog/catalog';
import { Engine } from '../../src/engine';
import type { BlocksnapError } from '../../src/errors';
import { finished, snapshot } from '../helpers/engine';
import { MiB, makeImage, pattern, sha256File, writeAt } from '../helpers/images';
import { check, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { ballast, smallFsOrSkip } from './small-fs';

/** Punches [offset, offset + length) of the file at `path`, as a guest's discard would. */
function punch(path: string, offset: number, length: number): void {
  const r = spawnSync('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fallocate: ${r.stderr || r.error?.message}`);
}

async function onSmallFs(t: Test, blockSize: number): Promise<{ engine: Engine; images: string } | null> {
  const small = smallFsOrSkip(t, 'bsr-', 32);
  if (small === null) return null;
  const { fs, tempDir: dir } = small;
  t.comment(`image root on a ${fs.kind}`);
  const images = join(fs.dir, 'images');
  mkdirSync(images);
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], blockSize });
  t.teardown(() => engine.close());
  return { engine, images };
}

/**
 * On a small filesystem: an 8 MiB raw image whose first `dataBytes` hold pattern(`label`),
 * registered and snapshotted as `name`; `want` is the image's SHA-256 at the snapshot.
 */
async function snapshottedOnSmallFs(t: Test, blockSize: number, label: string, dataBytes: number, name?: string) {
  const fx = await onSmallFs(t, blockSize);
  if (fx === null) return null;
  const img = makeImage(join(fx.images, `${label}.raw`), 8 * MiB);
  writeAt(img, 0, pattern(label, dataBytes));
  const disk = await fx.engine.addDisk({ path: img });
  const snap = await snapshot(fx.engine, disk.id, name);
  return { ...fx, img, disk, snap, want: await sha256File(img) };
}

t.test('a rollback that frees as much as it writes succeeds on a full filesystem', async (t) => {
  const fx = await snapshottedOnSmallFs(t, 64 * 1024, 'front', 4 * MiB);
  if (fx === null) return;
  const { engine, images, img, disk, snap, want } = fx;
  // The guest trims the front half and fills the back half: the image takes the same space.
  punch(img, 0, 4 * MiB);
  writeAt(img, 4 * MiB, pattern('back', 4 * MiB));
  ballast(images, 256 * 1024);
  const job = await engine.waitJob(engine.startRollback(disk.id, snap.id).id);
  t.equal(job.state, 'succeeded', `rolled back (${job.error?.code ?? ''} ${job.error?.message ?? ''})`);
  t.equal(await sha256File(img), want, 'bit-exact');
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing left to rerun');
});

t.test('a block whose data moved within it is rolled back on a full filesystem', async (t) => {
  const fx = await snapshottedOnSmallFs(t, 4 * MiB, 'first-half', 2 * MiB);
  if (fx === null) return;
  const { engine, images, img, disk, snap, want } = fx;
  punch(img, 0, 2 * MiB);
  writeAt(img, 2 * MiB, pattern('second half', 2 * MiB));
  ballast(images, 256 * 1024);
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(await sha256File(img), want, 'bit-exact');
});

t.test('a raw rollback the filesystem runs out of room for says the disk is partly rolled back, and a rerun finishes it', async (t) => {
  const fx = await snapshottedOnSmallFs(t, 64 * 1024, 'data', 4 * MiB, 'full');
  if (fx === null) return;
  const { engine, images, img, disk, snap, want } = fx;
  // The guest trims everything; then the filesystem fills up, leaving room for a quarter of it.
  punch(img, 0, 4 * MiB);
  const filler = ballast(images, 1 * MiB);
  const job = await engine.waitJob(engine.startRollback(disk.id, snap.id).id);
  t.equal(job.state, 'failed');
  t.match(job.error, {
    code: 'NoSpace',
    message: /rollback of disk .* to full stopped partway and its image is partly rolled back.*rerun it once the filesystem has room.*--abandon/,
  });
  t.match(engine.getDisk(disk.id).pendingRollback, { snapshotId: snap.id }, 'the journal stays: the disk refuses snapshots');
  unlinkSync(filler);
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(await sha256File(img), want, 'the rerun finishes it, bit-exact');
  t.equal(engine.getDisk(disk.id).pendingRollback, null);
});

t.test('a rollback the daemon may not write is refused before it is journaled', async (t) => {
  // Failing after the journal, it left the disk refusing snapshots (RollbackIncomplete) until
  // someone made the image writable and reran it.
  const fx = await onSmallFs(t, 64 * 1024);
  if (fx === null) return;
  const { engine, images } = fx;
  const raw = makeImage(join(images, 'ro.raw'), 1 * MiB);
  writeAt(raw, 0, pattern('raw', 64 * 1024));
  const qcow = join(images, 'ro.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow, '1M']);
  const mountPoint = join(images, '..');
  t.teardown(() => spawnSync('mount', ['-o', 'remount,rw', mountPoint]));
  for (const path of [raw, qcow]) {
    const disk = await engine.addDisk({ path });
    const snap = await snapshot(engine, disk.id);
    const r = spawnSync('mount', ['-o', 'remount,ro', mountPoint], { encoding: 'utf8' });
    if (r.status !== 0) {
      t.pass('cannot remount read-only here', { skip: r.stderr });
      return;
    }
    t.throws(() => engine.startRollback(disk.id, snap.id), { code: 'PermissionDenied', message: /may not write .*EROFS/ }, disk.format);
    t.equal(engine.getDisk(disk.id).pendingRollback, null, `${disk.format}: nothing journaled`);
    spawnSync('mount', ['-o', 'remount,rw', mountPoint]);
    await snapshot(engine, disk.id);
  }
});

/** `size` of 0x41 through qemu-io, so that the file holds that much data. */
function qcow2Disk(path: string, virtual: string, data: string): string {
  qemuImg('create', '-f', 'qcow2', path, virtual);
  qemuIo(path, 'qcow2', `write -P 0x41 0 ${data}`);
  return path;
}

/**
 * On a small filesystem: a 16 MiB qcow2 disk vm.qcow2 holding 8 MiB, snapshotted, then all 8 MiB
 * rewritten; null when the test cannot run here (onSmallFs said why).
 */
async function changedQcow2OnSmallFs(t: Test) {
  const fx = await onSmallFs(t, 64 * 1024);
  if (fx === null) return null;
  const img = qcow2Disk(join(fx.images, 'vm.qcow2'), '16M', '8M');
  const disk = await fx.engine.addDisk({ path: img });
  const snap = await snapshot(fx.engine, disk.id);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 8M');
  return { ...fx, img, disk, snap };
}

t.test('a qcow2 rollback whose new image cannot fit beside the disk is refused before it starts', { skip: haveQemu() }, async (t) => {
  // Started, it wrote until the filesystem was full, failed with NoSpace, and left the disk
  // refusing every snapshot (RollbackIncomplete) though the image was never touched.
  const fx = await changedQcow2OnSmallFs(t);
  if (fx === null) return;
  const { engine, images, img, disk, snap } = fx;
  const changed = await sha256File(img);
  const ball = ballast(images, 4 * MiB);
  const refusal = (() => {
    try {
      engine.startRollback(disk.id, snap.id);
      return null;
    } catch (err) {
      return err as BlocksnapError;
    }
  })();
  t.match(refusal, {
    code: 'NoSpace',
    message: /needs about 9(\.\d+)? MiB free in .*images, where its new image is written whole .*; [34](\.\d+)? MiB is free there/,
  }, 'refused, saying how much it needs and how much is free');
  // 8 MiB of data in 64 KiB clusters, a few metadata clusters, and room for the filesystem's own.
  const needed = refusal?.details?.neededBytes as number;
  t.ok(needed > 8 * MiB && needed < 10 * MiB, `an honest estimate (${needed} bytes)`);
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing journaled');
  t.equal(await sha256File(img), changed, 'the disk is untouched');
  t.equal((await snapshot(engine, disk.id)).status, 'available', 'and takes snapshots');

  // With the room back, the rollback runs.
  truncateSync(ball, 0);
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(check(img).status, 0, 'the rolled-back image is clean');
  t.equal(engine.getDisk(disk.id).pendingRollback, null);
});

t.test('an overlay\'s rollback asks room for all of the snapshot\'s data, and its refusal says the image would take less', { skip: haveQemu() }, async (t) => {
  // Which of the snapshot's blocks the backing file already holds is known only once the rollback
  // has read it all, so the check before it starts stays conservative, and says so.
  const fx = await onSmallFs(t, 64 * 1024);
  if (fx === null) return;
  const { engine, images } = fx;
  const golden = join(images, 'golden.raw');
  qemuImg('create', '-f', 'raw', golden, '16M');
  qemuIo(golden, 'raw', 'write -P 5 0 8M');
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', '-b', 'golden.raw', '-F', 'raw', img, '16M');
  qemuIo(img, 'qcow2', 'write -P 6 0 1M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  ballast(images, 4 * MiB);
  t.throws(() => engine.startRollback(disk.id, snap.id), {
    code: 'NoSpace',
    message: /the snapshot's 8 MiB of data plus qcow2 metadata; as an overlay, it holds only what differs from its backing file, which may be much less/,
  });
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing journaled');
});

t.test('a group rollback counts its qcow2 members\' new images together', { skip: haveQemu() }, async (t) => {
  const fx = await onSmallFs(t, 64 * 1024);
  if (fx === null) return;
  const { engine, images } = fx;
  const a = await engine.addDisk({ path: qcow2Disk(join(images, 'a.qcow2'), '8M', '6M') });
  const b = await engine.addDisk({ path: qcow2Disk(join(images, 'b.qcow2'), '8M', '6M') });
  const g = await engine.groups.create({ disks: [a.id, b.id], name: 'both' }).done;
  ballast(images, 10 * MiB);
  for (const d of [a, b]) {
    const member = engine.listSnapshots(d.id)[0]!;
    t.equal(member.groupId, g.id);
  }
  t.throws(() => engine.groups.rollback(g.id), { code: 'NoSpace', message: /with the other rollbacks of the group on that filesystem/ },
    'each would fit alone, both do not: refused before either starts');
  t.same([a, b].map((d) => engine.getDisk(d.id).pendingRollback), [null, null], 'nothing journaled');
});

t.test('a file of another user under a journaled rollback name does not count as room the rollback gets back', { skip: haveQemu() || (process.geteuid?.() !== 0 && 'needs root to give a file to another user') }, async (t) => {
  // The rollback removes only its own leftover there; counting another's, it started, wrote until
  // the filesystem was full and failed as the check is there to prevent.
  const fx = await changedQcow2OnSmallFs(t);
  if (fx === null) return;
  const { engine, images, disk, snap } = fx;
  const tempName = '.vm.qcow2.blocksnap-rollback-00112233445566ff';
  const catalog = (engine as unknown as { catalog: Catalog }).catalog;
  catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: snap.id, startedAt: new Date().toISOString(), jobId: 'j-0000000000000001', tempName } }));
  const theirs = join(images, tempName);
  writeFileSync(theirs, pattern('theirs', 8 * MiB));
  chownSync(theirs, 65534, 65534);
  ballast(images, 4 * MiB);
  t.throws(() => engine.startRollback(disk.id, snap.id), { code: 'NoSpace' }, 'refused: the 8 MiB there are not the rollback\'s to free');
  t.equal(statSync(theirs).uid, 65534, 'and the file is left where it is');
});
