/**
 * A disk registered as raw by detection (disk add without --format) whose image is then
 * converted to qcow2 under the same name is refused by snapshot, rollback and group rollback
 * (NotAnImage, naming what happened and the ways out), instead of being read or written as the
 * qcow2 file's raw bytes; so is a qcow2 disk whose image was converted to raw. A disk registered with --format raw stays raw whatever its image starts
 * with: only the operator can tell a guest's own bytes from a conversion.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { diskDetails } from '../../src/cli/views';
import type { Engine } from '../../src/engine';
import type { Snapshot } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, sha256File } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';
import { haveQemu, qemuImg } from '../helpers/qemu';

const noQemu = haveQemu();

/** As an operator does it: qemu-img convert to a new file, renamed over the disk's image. */
function convert(path: string, from: 'raw' | 'qcow2', to: 'raw' | 'qcow2'): void {
  const tmp = `${path}.tmp`;
  qemuImg('convert', '-f', from, '-O', to, path, tmp);
  renameSync(tmp, path);
}

async function snapshotFails(engine: Engine, disk: string, name: string): Promise<{ code?: string; message?: string }> {
  const job = await engine.waitJob(engine.startSnapshot(disk, { name }).id);
  if (job.state === 'succeeded') throw new Error(`snapshot ${name} of ${disk} succeeded`);
  return job.error ?? {};
}

const REFUSAL = /now starts with the qcow2 magic \(QFI\\xfb\), but disk vm was registered as raw \(detected\)/;

t.test('a detected raw disk converted to qcow2 is refused by snapshot and rollback, and taken again once converted back', { skip: noQemu }, async (t) => {
  const f = await openSmallEngine(t);
  const vm = await smallDisk(f, 'vm', 8);
  t.equal(f.engine.getDisk('vm').formatSource, 'detected');
  t.match(diskDetails(f.engine.getDisk('vm')), /^format: +raw \(detected\)$/m, 'disk show says the format was detected');
  const base = await snapshot(f.engine, 'vm', 'base');
  const before = f.engine.getDisk('vm');

  convert(vm.path, 'raw', 'qcow2');
  const converted = await sha256File(vm.path);
  const err = await snapshotFails(f.engine, 'vm', 'after');
  t.equal(err.code, 'NotAnImage', 'the snapshot is refused');
  t.match(err.message, REFUSAL, 'saying what happened');
  t.match(err.message, /qemu-img convert -f qcow2 -O raw/, 'and naming the ways out: convert it back');
  t.match(err.message, new RegExp(`register it again as qcow2, which deletes its snapshots \\(blocksnap disk remove vm --delete-snapshots, then blocksnap disk add ${vm.path} --format qcow2`), 'or register it again as qcow2');
  t.match(err.message, new RegExp(`confirm its format with blocksnap disk add ${vm.path} --format raw \\(the disk and its snapshots stay\\)`),
    'or, for a guest\'s own bytes, confirm raw');
  const after = f.engine.getDisk('vm');
  t.equal(after.sizeBytes, before.sizeBytes, 'the disk keeps its size (not the qcow2 file\'s)');
  t.equal(after.headSnapshotId, base.id, 'and its head');
  t.equal(f.engine.listSnapshots('vm').filter((s) => s.status === 'available').length, 1, 'no snapshot of the qcow2 bytes is available');

  t.throws(() => f.engine.startRollback('vm', 'base'), { code: 'NotAnImage', message: REFUSAL }, 'a rollback is refused before it starts');
  t.equal(await sha256File(vm.path), converted, 'the image was not touched');
  t.equal(f.engine.getDisk('vm').pendingRollback, null, 'and nothing was journaled');

  convert(vm.path, 'qcow2', 'raw');
  const again = await snapshot(f.engine, 'vm', 'again');
  t.equal(again.changedBlocks, 0, 'converted back, the disk is snapshotted as before, unchanged');
  t.equal(again.sizeBytes, 8 * KiB64);
  await finished(f.engine, f.engine.startRollback('vm', 'base'));
});

t.test('a qcow2 disk converted to raw is refused by snapshot and rollback, naming the ways out, and taken again once converted back', { skip: noQemu }, async (t) => {
  const f = await openSmallEngine(t);
  const path = join(f.images, 'vm.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', path, String(8 * KiB64));
  await f.engine.addDisk({ path, name: 'vm' });
  await snapshot(f.engine, 'vm', 'base');

  convert(path, 'qcow2', 'raw');
  const converted = await sha256File(path);
  const err = await snapshotFails(f.engine, 'vm', 'after');
  t.equal(err.code, 'NotAnImage', 'the snapshot is refused');
  t.match(err.message, /no longer starts with the qcow2 magic \(QFI\\xfb\), but disk vm was registered as qcow2/, 'saying what happened');
  t.match(err.message, /qemu-img convert -f raw -O qcow2/, 'and naming the ways out: convert it back');
  t.match(err.message, new RegExp(`register it again as raw, which deletes its snapshots \\(blocksnap disk remove vm --delete-snapshots, then blocksnap disk add ${path} --format raw`), 'or register it again as raw');
  t.throws(() => f.engine.startRollback('vm', 'base'), { code: 'NotAnImage', details: { format: 'qcow2', found: 'raw' } }, 'a rollback is refused before it starts');
  t.equal(await sha256File(path), converted, 'the image was not touched');

  convert(path, 'raw', 'qcow2');
  const again = await snapshot(f.engine, 'vm', 'again');
  t.equal(again.changedBlocks, 0, 'converted back, the disk is snapshotted as before, unchanged');
});

t.test('retrying a failed snapshot under its name says the failed one holds it, and how to free it', { skip: noQemu }, async (t) => {
  const f = await openSmallEngine(t);
  const path = join(f.images, 'vm.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', path, String(8 * KiB64));
  await f.engine.addDisk({ path, name: 'vm' });
  convert(path, 'qcow2', 'raw');
  await snapshotFails(f.engine, 'vm', 'nightly');
  const failed = f.engine.listSnapshots('vm').find((s) => s.name === 'nightly')!;
  t.equal(failed.status, 'error', 'the failed snapshot keeps its name, to say why');

  convert(path, 'raw', 'qcow2');
  t.throws(() => f.engine.startSnapshot('vm', { name: 'nightly' }), {
    code: 'NameTaken',
    message: `disk vm already has a snapshot named "nightly"; it is the failed snapshot ${failed.id} (NotAnImage), kept to say why: delete it (blocksnap snapshot delete ${failed.id}) to use the name again`,
    details: { snapshotId: failed.id, status: 'error' },
  });
  await f.engine.deleteSnapshot(failed.id);
  t.equal((await snapshot(f.engine, 'vm', 'nightly')).status, 'available', 'deleted, the name is free');
});

t.test('group rollback refuses, starting nothing, when a member disk detected as raw was converted to qcow2', { skip: noQemu }, async (t) => {
  const f = await openSmallEngine(t);
  const a = await smallDisk(f, 'vm', 4);
  const b = await smallDisk(f, 'data', 4);
  await f.engine.groups.create({ disks: ['data', 'vm'], name: 'g1' }).done;
  fillBlock(b.path, 0, KiB64, 'changed');
  const dataBefore = await sha256File(b.path);
  convert(a.path, 'raw', 'qcow2');
  t.throws(() => f.engine.groups.rollback('g1'), { code: 'NotAnImage', message: REFUSAL });
  t.equal(await sha256File(b.path), dataBefore, 'the other member was not rolled back');
  t.same(f.engine.listJobs().filter((j) => j.kind === 'rollback'), [], 'no rollback job started');
});

t.test('a disk registered with --format raw stays raw when its image starts with the qcow2 magic', { skip: noQemu }, async (t) => {
  const f = await openSmallEngine(t);
  const path = makeImage(join(f.images, 'nested.raw'), 4 * KiB64);
  for (let i = 0; i < 4; i++) fillBlock(path, i, KiB64, `nested-${i}`);
  const d = await f.engine.addDisk({ path, name: 'nested', format: 'raw' });
  t.equal(d.formatSource, 'given');
  t.match(diskDetails(d), /^format: +raw \(--format\)$/m);
  await snapshot(f.engine, 'nested', 'one');
  // What the operator chose raw for: the bytes a guest wrote at the start of its own disk.
  convert(path, 'raw', 'qcow2');
  const s = await snapshot(f.engine, 'nested', 'two');
  t.equal(s.sizeBytes, (await import('node:fs')).statSync(path).size, 'read as raw bytes, as registered');
  await finished(f.engine, f.engine.startRollback('nested', 'one'));
});

t.test('a raw image that starts with the qcow2 magic from the start is registered as qcow2 or refused; given raw, it is raw', async (t) => {
  const f = await openSmallEngine(t);
  const path = makeImage(join(f.images, 'magic.raw'), 4 * KiB64);
  writeFileSync(path, Buffer.from('QFI\xfb', 'latin1'), { flag: 'r+' });
  await t.rejects(f.engine.addDisk({ path, name: 'magic' }), { code: 'ImageCorrupt' }, 'detected as qcow2, whose header it is not');
  const d = await f.engine.addDisk({ path, name: 'magic', format: 'raw' });
  t.equal(d.formatSource, 'given');
  const s: Snapshot = await snapshot(f.engine, 'magic', 'one');
  t.equal(s.sizeBytes, 4 * KiB64);
});

t.test('a disk record from before the choice was recorded counts as detected', async (t) => {
  const dir = t.testdir();
  const first = await openSmallEngine(t, { dir });
  const vm = await smallDisk(first, 'vm', 4);
  await snapshot(first.engine, 'vm', 'base');
  await first.engine.close();
  const catalog = Catalog.open(first.dataDir, KiB64);
  catalog.txn(() => {
    const { formatSource: _, ...old } = catalog.getDisk(vm.id)!;
    catalog.putDisk(old);
  });
  t.equal(catalog.getDisk(vm.id)!.formatSource, undefined, 'the record lacks the field');
  await catalog.close();

  const second = await openSmallEngine(t, { dir });
  t.equal(second.engine.getDisk('vm').formatSource, 'detected', 'shown as detected');
  // Without qemu-img: the four bytes of the magic, as a conversion leaves them.
  writeFileSync(vm.path, Buffer.from('QFI\xfb', 'latin1'), { flag: 'r+' });
  const err = await snapshotFails(second.engine, 'vm', 'after');
  t.equal(err.code, 'NotAnImage');
  t.match(err.message, REFUSAL);
});

t.test('disk add --format raw of a registered detected raw disk confirms raw: its guest\'s magic is then read as raw, snapshots kept', async (t) => {
  const f = await openSmallEngine(t);
  const vm = await smallDisk(f, 'vm', 4);
  const base = await snapshot(f.engine, 'vm', 'base');
  // A guest that put a nested VM's qcow2 image on its whole raw disk.
  writeFileSync(vm.path, Buffer.from('QFI\xfb', 'latin1'), { flag: 'r+' });
  t.equal((await snapshotFails(f.engine, 'vm', 'refused')).code, 'NotAnImage');
  await t.rejects(f.engine.addDisk({ path: vm.path, name: 'other', format: 'raw' }), { code: 'DiskAlreadyRegistered' }, 'nor is another name');
  const d = await f.engine.addDisk({ path: vm.path, format: 'raw' });
  t.match(d, { id: vm.id, name: 'vm', formatSource: 'given', headSnapshotId: base.id }, 'the same disk, its format now given');
  const s = await snapshot(f.engine, 'vm', 'kept');
  t.equal(s.parentId, base.id, 'snapshots go on from the same chain');
  await finished(f.engine, f.engine.startRollback('vm', 'base'));
  t.same((await f.engine.addDisk({ path: vm.path, format: 'raw' })).id, vm.id, 'confirming again changes nothing');
});

t.test('a copy-on-write disk has no format source', async (t) => {
  const f = await openSmallEngine(t);
  await smallDisk(f, 'vm', 2);
  await snapshot(f.engine, 'vm', 'base');
  const c = await f.engine.cloneCow('base', 'c');
  t.equal(c.formatSource, null);
  t.match(diskDetails(c), /^format: +cow$/m);
});
