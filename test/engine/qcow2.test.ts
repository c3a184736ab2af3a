/**
 * qcow2 disks through the engine, judged by QEMU's own tools: images made by qemu-img and written
 * by qemu-io are snapshotted, cloned to raw and qcow2 (qemu-img compare identical, qemu-img check
 * clean), changed, rolled back (check clean, compare identical to the clone).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { check, compare, haveQemu, holdWithNbd, info, map, ownRanges, qemuImg, qemuIo, run } from '../helpers/qemu';
import type { CloneResult, Disk } from '../../src/engine/types';
import type { Engine } from '../../src/engine';

const missing = haveQemu();
if (missing) t.plan(0, missing);

const KiB = 1024;
const MiB = 1024 * KiB;

async function cloneTo(engine: Engine, snap: string, path: string, format: 'raw' | 'qcow2'): Promise<CloneResult> {
  return (await finished(engine, engine.startClone(snap, path, { format }))).result as CloneResult;
}

interface Variant { name: string; create: string[]; compressed?: boolean }

const variants: Variant[] = [
  { name: 'v2, 64 KiB clusters', create: ['-o', 'compat=0.10,cluster_size=65536'] },
  { name: 'v3, 64 KiB clusters', create: ['-o', 'compat=1.1,cluster_size=65536'] },
  { name: 'v3, 2 MiB clusters', create: ['-o', 'compat=1.1,cluster_size=2097152'] },
  { name: 'v3, extended L2 (subclusters)', create: ['-o', 'compat=1.1,cluster_size=131072,extended_l2=on'] },
  { name: 'v3, compressed clusters (qemu-img convert -c)', create: ['-o', 'compat=1.1,cluster_size=65536'], compressed: true },
];

for (const v of variants) {
  t.test(`${v.name}: snapshot, clone raw and qcow2, change, rollback`, async (t) => {
    const { engine, images } = await openEngine(t);
    const img = join(images, 'disk.qcow2');
    if (v.compressed) {
      const raw = join(images, 'src.raw');
      qemuImg('create', '-f', 'raw', raw, '24M');
      qemuIo(raw, 'raw', 'write -P 0xab 0 3M', 'write -P 0x5c 9M 100k', 'write -P 0x01 20M 4M');
      qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', ...v.create, raw, img);
      t.match(info(img)['format-specific'], { data: { 'compression-type': 'zlib' } });
    } else {
      qemuImg('create', '-f', 'qcow2', ...v.create, img, '24M');
      // Full clusters, a partial cluster, a zeroed range over data, a subcluster-sized write.
      qemuIo(img, 'qcow2', 'write -P 0xab 0 3M', 'write -P 0x5c 9M 100k', 'write -P 0x01 20M 4M', 'write -z 21M 1M', 'write -P 0x77 13M 8k');
    }
    t.equal(check(img).status, 0, 'the source image is clean');

    const disk = await engine.addDisk({ path: img });
    t.equal(disk.format, 'qcow2', 'detected by its magic');
    t.equal(disk.sizeBytes, 24 << 20, 'the virtual size, not the file size');
    const snap = await snapshot(engine, disk.id, 'base');
    t.equal(snap.consistency, 'offline', 'no VM held the image');

    const rawClone = await cloneTo(engine, snap.id, join(images, 'clone.raw'), 'raw');
    t.equal(compare(img, 'qcow2', rawClone.path, 'raw').status, 0, 'raw clone: qemu-img compare identical');
    const qClone = await cloneTo(engine, snap.id, join(images, 'clone.qcow2'), 'qcow2');
    t.equal(qClone.format, 'qcow2');
    const c = check(qClone.path);
    t.equal(c.status, 0, `qcow2 clone: qemu-img check clean ${c.stdout}${c.stderr}`);
    t.equal(compare(img, 'qcow2', qClone.path, 'qcow2').status, 0, 'qcow2 clone: qemu-img compare identical');
    t.equal(info(qClone.path)['backing-filename'], undefined, 'the clone has no backing file');

    qemuIo(img, 'qcow2', 'write -P 0xee 1M 2M', 'write -z 20M 1M', 'write -P 0x42 16M 64k');
    t.not(compare(img, 'qcow2', qClone.path, 'qcow2').status, 0, 'the change is visible');
    const before = info(img);
    const rolled = await finished(engine, engine.startRollback(disk.id, snap.id));
    t.match(rolled.result, { newImage: true, blocksWritten: Math.ceil(snap.logicalBytes / snap.blockSize) }, 'a new image of the snapshot\'s data blocks');
    const after = check(img);
    t.equal(after.status, 0, `after rollback: qemu-img check clean ${after.stdout}${after.stderr}`);
    t.equal(compare(img, 'qcow2', qClone.path, 'qcow2').status, 0, 'after rollback: identical to the clone');
    const now = info(img);
    // QEMU writes the same content into as much room: what it leaves of each cluster is a hole.
    const byQemu = join(images, 'by-qemu.qcow2');
    qemuImg('convert', '-f', 'qcow2', '-O', 'qcow2', ...v.create, img, byQemu);
    const room = (i: Record<string, unknown>): number => i['actual-size'] as number;
    t.ok(room(now) <= 1.25 * room(info(byQemu)) + 256 * 1024, `as sparse as QEMU's own image (${room(now)} against ${room(info(byQemu))} bytes)`);
    t.equal(now['cluster-size'], before['cluster-size'], 'cluster size kept');
    t.equal((now['format-specific'] as { data: { compat: string } }).data.compat, (before['format-specific'] as { data: { compat: string } }).data.compat, 'compat level kept');
    t.same(engine.getDisk(disk.id).pendingRollback, null);
  });
}

t.test('a three-deep backing chain with relative names reads through every level', async (t) => {
  const { engine, images } = await openEngine(t);
  const dir = join(images, 'chain');
  mkdirSync(dir);
  const base = join(dir, 'base.raw');
  qemuImg('create', '-f', 'raw', base, '16M');
  qemuIo(base, 'raw', 'write -P 0x10 0 8M');
  qemuImg('create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', join(dir, 'mid.qcow2'));
  qemuIo(join(dir, 'mid.qcow2'), 'qcow2', 'write -P 0x20 2M 2M', 'write -z 6M 1M');
  qemuImg('create', '-f', 'qcow2', '-o', 'compat=1.1', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2'));
  qemuIo(join(dir, 'top.qcow2'), 'qcow2', 'write -P 0x30 3M 64k', 'write -P 0x31 12M 1M');
  const top = join(dir, 'top.qcow2');

  const disk: Disk = await engine.addDisk({ path: top });
  const snap = await snapshot(engine, disk.id);
  const clone = await cloneTo(engine, snap.id, join(images, 'flat.raw'), 'raw');
  t.equal(compare(top, 'qcow2', clone.path, 'raw').status, 0, 'the snapshot is the whole chain\'s view');

  qemuIo(top, 'qcow2', 'write -P 0x99 0 1M', 'write -z 2M 1M');
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(check(top).status, 0, 'qemu-img check clean');
  t.equal(compare(top, 'qcow2', clone.path, 'raw').status, 0, 'rolled back');
  const i = info(top);
  t.equal(i['backing-filename'], 'mid.qcow2', 'the backing file name is kept as it was, relative');
  t.equal(i['backing-filename-format'], 'qcow2');
  t.same(ownRanges(top), [[3 * MiB, 3 * MiB + 64 * KiB], [12 * MiB, 13 * MiB]], 'the new top holds only what the chain below does not');
});

// An overlay on a golden image rolled back: the new image must hold only where the snapshot
// differs from what the backing file holds, as the overlay did, not a copy of the golden data.
for (const compat of ['1.1', '0.10']) {
  t.test(`a rolled-back overlay (compat ${compat}) holds only what differs from its backing file`, async (t) => {
    const { engine, images } = await openEngine(t);
    const golden = join(images, 'golden.raw');
    qemuImg('create', '-f', 'raw', golden, '32M');
    qemuIo(golden, 'raw', 'write -P 5 0 24M');
    const img = join(images, 'vm.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', `compat=${compat}`, '-b', 'golden.raw', '-F', 'raw', img, '32M');
    // Block 0 differs in its first MiB; block 2 is zeroed over the golden data.
    qemuIo(img, 'qcow2', 'write -P 6 0 1M', 'write -z 8M 4M');
    const disk = await engine.addDisk({ path: img });
    const snap = await snapshot(engine, disk.id, 's1');
    const clone = await cloneTo(engine, snap.id, join(images, 's1.raw'), 'raw');

    qemuIo(img, 'qcow2', 'write -P 7 0 1M', 'write -P 8 16M 4M', 'write -P 9 28M 1M', 'write -P 10 9M 1M');
    const rolled = await finished(engine, engine.startRollback(disk.id, snap.id));
    const c = check(img);
    t.equal(c.status, 0, `qemu-img check clean ${c.stdout}${c.stderr}`);
    t.equal(compare(img, 'qcow2', clone.path, 'raw').status, 0, 'reads as the snapshot');
    t.equal(run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0 8M 4M', img]).stdout.includes('Pattern verification failed'), false,
      'the ZERO block reads as zeros over the golden data');
    t.same(ownRanges(img), [[0, MiB], [8 * MiB, 12 * MiB]], 'only the changed MiB and the zeroed block are the image\'s own');
    if (compat === '1.1') {
      t.match(map(img).filter((e) => e.depth === 0), [{ start: 0, length: MiB, data: true }, { start: 8 * MiB, length: 4 * MiB, zero: true, data: false }],
        'the zeroed block is zero clusters');
    }
    t.match(rolled.result, { newImage: true, blocksWritten: 1, bytesWritten: MiB, blocksFromBacking: 4, blocksUnchanged: 7, clustersZeroed: 64 },
      'the changed MiB of block 0 written, blocks 1, 3, 4, 5 left to the backing file, block 2 zeroed over it, 6 and 7 zero');
    t.ok((info(img)['actual-size'] as number) < 4 * MiB, `the overlay stays small (${info(img)['actual-size'] as number} bytes)`);
    t.match(info(img), { 'backing-filename': 'golden.raw', 'backing-filename-format': 'raw' });
  });
}

t.test('a backing file outside every image root is refused', async (t) => {
  const { engine, images } = await openEngine(t);
  const outside = join(images, '..', 'outside.raw');
  qemuImg('create', '-f', 'raw', outside, '4M');
  const img = join(images, 'over.qcow2');
  qemuImg('create', '-f', 'qcow2', '-b', outside, '-F', 'raw', img);
  await t.rejects(engine.addDisk({ path: img }), { code: 'PathNotAllowed' });
});

t.test('a rollback keeps a backing file whose format the header does not record, with the format probed', async (t) => {
  const { engine, images } = await openEngine(t);
  const base = join(images, 'probed-base.raw');
  qemuImg('create', '-q', '-f', 'raw', base, '4M');
  qemuIo(base, 'raw', 'write -P 0x10 0 4M');
  const img = join(images, 'probed.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'probed-base.raw', '-F', 'raw', img);
  // The backing format extension becomes one of an unknown type, which QEMU skips.
  const bytes = readFileSync(img);
  const at = bytes.subarray(0, 65536).indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
  t.ok(at > 0 && at % 8 === 0, 'the header has a backing format extension');
  bytes.writeUInt32BE(0x6e6f6e65, at);
  writeFileSync(img, bytes);
  t.equal(info(img)['backing-filename-format'], undefined, 'the header records no backing format');
  qemuIo(img, 'qcow2', 'write -P 0x20 1M 1M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = await cloneTo(engine, snap.id, join(images, 'probed-want.raw'), 'raw');
  qemuIo(img, 'qcow2', 'write -P 0x30 0 4M');
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(check(img).status, 0, 'qemu-img check clean');
  t.equal(compare(img, 'qcow2', want.path, 'raw').status, 0, 'rolled back');
  t.match(info(img), { 'backing-filename': 'probed-base.raw', 'backing-filename-format': 'raw' }, 'the backing file is kept, its format as probed');
});

t.test('a backing chain that refers back into itself, or is deeper than 64 images, is refused', async (t) => {
  const { engine, images } = await openEngine(t);
  const loop = join(images, 'loop.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'loop.qcow2', '-F', 'qcow2', loop, '1M');
  await t.rejects(engine.addDisk({ path: loop }), { code: 'ImageCorrupt', message: /refers back to an image already in it/ });
  const deep = join(images, 'deep');
  mkdirSync(deep);
  qemuImg('create', '-q', '-f', 'raw', join(deep, 'l65.raw'), '1M');
  for (let i = 64; i >= 0; i--) {
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', i === 64 ? 'l65.raw' : `l${i + 1}.qcow2`, '-F', i === 64 ? 'raw' : 'qcow2', join(deep, `l${i}.qcow2`), '1M');
  }
  await t.rejects(engine.addDisk({ path: join(deep, 'l0.qcow2') }), { code: 'UnsupportedFormat', message: /deeper than 64/ });
  t.match(await engine.addDisk({ path: join(deep, 'l1.qcow2') }), { format: 'qcow2' }, '64 backing files are allowed');
  t.same(engine.listDisks().length, 1);
});

/**
 * vms/vm.qcow2 links to real/vm.qcow2, whose relative backing name base.raw names vms/base.raw
 * from the link (what QEMU opening it reads) and real/base.raw from the real path.
 */
function ambiguousLink(images: string): void {
  mkdirSync(join(images, 'real'));
  mkdirSync(join(images, 'vms'));
  qemuImg('create', '-f', 'raw', join(images, 'real', 'base.raw'), '4M');
  qemuImg('create', '-f', 'raw', join(images, 'vms', 'base.raw'), '4M');
  qemuImg('create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', join(images, 'real', 'vm.qcow2'));
  symlinkSync(join('..', 'real', 'vm.qcow2'), join(images, 'vms', 'vm.qcow2'));
}

t.test('an overlay given through a symlink whose relative backing name QEMU would resolve to another file is refused', async (t) => {
  const { engine, images } = await openEngine(t);
  ambiguousLink(images);
  // QEMU opening vms/vm.qcow2 reads vms/base.raw; the real path's directory has another base.raw.
  await t.rejects(engine.addDisk({ path: join(images, 'vms', 'vm.qcow2') }), {
    code: 'BackingFileAmbiguous',
    message: `${join(images, 'vms', 'vm.qcow2')} links to ${join(images, 'real', 'vm.qcow2')}; QEMU opening ${join(images, 'vms', 'vm.qcow2')} reads ${join(images, 'vms', 'base.raw')}, but from the real path it is ${join(images, 'real', 'base.raw')}`,
  });
  t.same(engine.listDisks(), [], 'nothing registered');
  t.match(await engine.addDisk({ path: join(images, 'real', 'vm.qcow2') }), { format: 'qcow2' }, 'by its real path it registers');
});

t.test('the command an ambiguous backing name\'s refusal gives works on this QEMU, and the image then registers by its link', async (t) => {
  const { engine, images } = await openEngine(t);
  ambiguousLink(images);
  const err = await engine.addDisk({ path: join(images, 'vms', 'vm.qcow2') }).then(() => null, (e: Error) => e);
  const command = /qemu-img rebase (.*)$/.exec(err?.message ?? '');
  t.same(command?.[1]?.split(' '), ['-u', '-b', join(images, 'real', 'base.raw'), '-F', 'raw', join(images, 'real', 'vm.qcow2')]);
  qemuImg('rebase', ...command![1]!.split(' '));
  t.match(await engine.addDisk({ path: join(images, 'vms', 'vm.qcow2') }), { format: 'qcow2' });
});

t.test('an overlay given through a symlink whose backing name resolves to the same file either way registers', async (t) => {
  const { engine, images } = await openEngine(t);
  mkdirSync(join(images, 'real'));
  mkdirSync(join(images, 'vms'));
  qemuImg('create', '-f', 'raw', join(images, 'real', 'base.raw'), '4M');
  symlinkSync(join('..', 'real', 'base.raw'), join(images, 'vms', 'base.raw'));
  qemuImg('create', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', join(images, 'real', 'vm.qcow2'));
  symlinkSync(join('..', 'real', 'vm.qcow2'), join(images, 'vms', 'vm.qcow2'));
  t.match(await engine.addDisk({ path: join(images, 'vms', 'vm.qcow2') }), { format: 'qcow2', path: join(images, 'real', 'vm.qcow2') });
});

t.test('rollback refuses to drop internal qcow2 snapshots', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'int.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '8M');
  qemuIo(img, 'qcow2', 'write -P 0x11 0 1M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  qemuImg('snapshot', '-c', 'inside', img);
  t.throws(() => engine.startRollback(disk.id, snap.id), { code: 'ImageHasInternalSnapshots' });
  t.match(qemuImg('snapshot', '-l', img), /inside/, 'the internal snapshot is still there');
});

t.test('an image held by qemu-nbd: crash-consistent snapshots, rollback only with force', async (t) => {
  const { engine, images } = await openEngine(t);
  for (const format of ['raw', 'qcow2'] as const) {
    const img = join(images, `held.${format}`);
    qemuImg('create', '-f', format, img, '8M');
    qemuIo(img, format, 'write -P 0x21 0 2M');
    const disk = await engine.addDisk({ path: img, format });
    const snap = await snapshot(engine, disk.id, 'clean');
    t.equal(snap.consistency, 'offline');
    const clone = await cloneTo(engine, snap.id, join(images, `held-${format}.raw`), 'raw');
    qemuIo(img, format, 'write -P 0x22 0 1M');

    // A Unix socket path must stay under 108 bytes: not in the test's deep fixture directory.
    const sockets = mkdtempSync(join(tmpdir(), 'bs-nbd-'));
    t.teardown(() => rmSync(sockets, { recursive: true, force: true }));
    const nbd = await holdWithNbd(img, format, join(sockets, 'nbd.sock'));
    try {
      const live = await snapshot(engine, disk.id, 'live');
      t.equal(live.consistency, 'crash', `${format}: a snapshot while a QEMU process may write is crash-consistent`);
      t.throws(() => engine.startRollback(disk.id, snap.id), { code: 'DiskInUse', message: /holds .*write/ }, `${format}: refused while held`);
      t.same(engine.getDisk(disk.id).pendingRollback, null, 'nothing was journaled');
      await finished(engine, engine.startRollback(disk.id, snap.id, { force: true }));
    } finally {
      await nbd.stop();
    }
    t.equal(compare(img, format, clone.path, 'raw').status, 0, `${format}: forced rollback restored the snapshot`);
  }
});

t.test('while a qcow2 rollback runs, QEMU cannot open the image', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'busy.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '64M');
  qemuIo(img, 'qcow2', 'write -P 0x33 0 64M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const job = engine.startRollback(disk.id, snap.id);
  const seen: string[] = [];
  for (let i = 0; i < 200 && engine.getJob(job.id).state === 'running'; i++) {
    const r = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'read 0 512', img], { encoding: 'utf8' });
    if (r.status !== 0) seen.push(r.stderr);
    await new Promise((res) => setTimeout(res, 5));
  }
  await finished(engine, job);
  if (seen.length === 0) t.comment('the rollback finished before qemu-io could try; the lock is checked by the native tests');
  for (const e of seen) t.match(e, /lock/i, 'qemu-io was refused by the lock');
  t.equal(check(img).status, 0);
});

t.test('a header damaged after registration fails the snapshot with a code', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'later.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '8M');
  const disk = await engine.addDisk({ path: img });
  const bytes = readFileSync(img);
  bytes.writeUInt32BE(40, 20); // cluster bits 40
  writeFileSync(img, bytes);
  const done = await engine.waitJob(engine.startSnapshot(disk.id).id);
  t.equal(done.state, 'failed');
  t.equal(done.error?.code, 'ImageCorrupt');
});

t.test('a v2 overlay keeps its backing file and hides it where the snapshot is zero', async (t) => {
  const { engine, images } = await openEngine(t);
  const base = join(images, 'base.raw');
  qemuImg('create', '-f', 'raw', base, '16M');
  qemuIo(base, 'raw', 'write -P 0x10 0 16M');
  const img = join(images, 'v2.qcow2');
  qemuImg('create', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'base.raw', '-F', 'raw', img);
  qemuIo(img, 'qcow2', 'write -z 0 4M', 'write -P 0x20 8M 1M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const clone = await cloneTo(engine, snap.id, join(images, 'v2-flat.raw'), 'raw');
  t.equal(compare(img, 'qcow2', clone.path, 'raw').status, 0);
  qemuIo(img, 'qcow2', 'write -P 0x30 0 16M');
  await finished(engine, engine.startRollback(disk.id, snap.id));
  const c = check(img);
  t.equal(c.status, 0, `qemu-img check clean ${c.stdout}${c.stderr}`);
  t.equal(compare(img, 'qcow2', clone.path, 'raw').status, 0, 'zero blocks read as zero over a non-zero backing file');
  t.match(info(img), { 'backing-filename': 'base.raw', 'format-specific': { data: { compat: '0.10' } } });
});

t.test('a cancelled qcow2 rollback leaves the image as it was, journals nothing, and a later rollback completes', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'cancel.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '64M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 64M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const clone = await cloneTo(engine, snap.id, join(images, 'want.raw'), 'raw');
  qemuIo(img, 'qcow2', 'write -P 0x42 0 64M');
  const changed = await cloneTo(engine, (await snapshot(engine, disk.id)).id, join(images, 'changed.raw'), 'raw');

  const job = engine.startRollback(disk.id, snap.id);
  await new Promise((r) => setTimeout(r, 30));
  engine.cancelJob(job.id);
  const done = await engine.waitJob(job.id);
  if (done.state === 'cancelled') {
    // The disk file is the one journaled: the rename never happened, so the journal went with the job.
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing left journaled');
    t.equal(compare(img, 'qcow2', changed.path, 'raw').status, 0, 'the image was not touched');
    t.equal(check(img).status, 0);
    t.notOk(readdirSync(images).some((n) => n.startsWith('.cancel.qcow2.blocksnap-rollback')), 'no temp file left');
  } else {
    t.comment(`the rollback ${done.state} before the cancel arrived`);
  }
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(compare(img, 'qcow2', clone.path, 'raw').status, 0, 'a rollback afterwards completes');
  t.equal(engine.getDisk(disk.id).pendingRollback, null);
});

t.test('zstd-compressed clusters fail the snapshot with UnsupportedFormat', async (t) => {
  const { engine, images } = await openEngine(t);
  const raw = join(images, 'z.raw');
  qemuImg('create', '-f', 'raw', raw, '4M');
  qemuIo(raw, 'raw', 'write -P 5 0 1M');
  const img = join(images, 'z.qcow2');
  const made = spawnSync('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', raw, img], { encoding: 'utf8' });
  if (made.status !== 0) {
    t.plan(0, `this qemu-img cannot write zstd: ${made.stderr}`);
    return;
  }
  const disk = await engine.addDisk({ path: img });
  const done = await engine.waitJob(engine.startSnapshot(disk.id).id);
  t.equal(done.state, 'failed');
  t.equal(done.error?.code, 'UnsupportedFormat');
  t.match(done.error?.message, /zstd/);
});

t.test('an image whose name leaves no room for the temp suffix is rolled back', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, `${'v'.repeat(240)}.qcow2`); // 246 bytes: with the suffix, over 255
  qemuImg('create', '-f', 'qcow2', img, '8M');
  qemuIo(img, 'qcow2', 'write -P 0x31 0 1M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = await cloneTo(engine, snap.id, join(images, 'want.raw'), 'raw');
  qemuIo(img, 'qcow2', 'write -P 0x32 0 2M');
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(check(img).status, 0, 'qemu-img check clean');
  t.equal(compare(img, 'qcow2', want.path, 'raw').status, 0, 'identical to the snapshot');
  t.equal(engine.getDisk(disk.id).pendingRollback, null);
  await snapshot(engine, disk.id);
});
