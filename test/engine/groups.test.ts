import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, randomData, sha256File, writeAt } from '../helpers/images';
import { readAll, served } from '../helpers/cow';
import { KiB64, openSmallEngine, smallDisk, type ModelFixture } from '../helpers/model';
import { haveQemu, holdWithNbd } from '../helpers/qemu';
import { checkNotInUse } from '../../src/engine/image-access';
import { BlocksnapError } from '../../src/errors';
import type { applyImage } from '../../src/native';

function inUse(path: string): boolean {
  try {
    return checkNotInUse(path, false) !== null;
  } catch {
    return true;
  }
}

async function threeDisks(f: ModelFixture): Promise<Array<{ id: string; path: string }>> {
  return [await smallDisk(f, 'root', 4), await smallDisk(f, 'data', 6), await smallDisk(f, 'logs', 3)];
}

/**
 * Puts a closed engine's catalog in the state a crash leaves while group `groupId` is created:
 * the group `creating` again, plus whatever `more` writes in the same transaction.
 */
async function crashWindow(dataDir: string, groupId: string, more: (catalog: Catalog) => void = () => {}): Promise<void> {
  const catalog = Catalog.open(dataDir, KiB64);
  const model = new ModelCatalog(catalog);
  catalog.txn(() => {
    model.putGroup({ ...model.getGroup(groupId)!, status: 'creating', completedAt: null });
    more(catalog);
  });
  await catalog.close();
}

t.test('a group of three disks where one is busy starts nothing; once free, all three are taken', async (t) => {
  const f = await openSmallEngine(t);
  const [a, b, c] = await threeDisks(f);
  const busy = f.engine.startSnapshot(b!.id, { name: 'solo' });
  t.throws(() => f.engine.groups.create({ disks: ['root', 'data', 'logs'], name: 'g1' }), { code: 'DiskBusy' }, 'refused while data is busy');
  t.same(f.engine.groups.list(), [], 'no group record');
  t.same(f.engine.listSnapshots(a!.id), [], 'no member started on root');
  t.same(f.engine.listSnapshots(c!.id), [], 'no member started on logs');
  await finished(f.engine, busy);

  const { group, done } = f.engine.groups.create({ disks: ['root', 'data', 'logs'], name: 'g1', description: 'release 42' });
  t.equal(group.status, 'creating');
  t.equal(group.snapshotIds.length, 3);
  const g = await done;
  t.equal(g.status, 'available');
  t.ok(g.completedAt);
  const members = g.snapshotIds.map((id) => f.engine.getSnapshot(id));
  t.same(members.map((s) => s.diskId), [a!.id, b!.id, c!.id], 'one member per disk, in order');
  t.ok(members.every((s) => s.status === 'available' && s.groupId === g.id && s.name === 'g1' && s.description === 'release 42'));
  t.same(f.engine.groups.get('g1').id, g.id, 'found by name');
  t.throws(() => f.engine.groups.get('nope'), { code: 'GroupNotFound' });
  t.throws(() => f.engine.groups.create({ disks: ['root'], name: 'g1' }), { code: 'NameTaken' });
  t.throws(() => f.engine.groups.create({ disks: ['root', 'root'] }), { code: 'InvalidArgument' });
  t.throws(() => f.engine.groups.create({ disks: ['root'], name: 'auto-x' }), { code: 'InvalidName' });
});

t.test('group rollback restores every member disk bit-exactly, and refuses unless every disk passes', async (t) => {
  const f = await openSmallEngine(t);
  const disks = await threeDisks(f);
  const before = await Promise.all(disks.map((d) => sha256File(d.path)));
  const g = await f.engine.groups.create({ disks: disks.map((d) => d.id) }).done;
  for (const [i, d] of disks.entries()) fillBlock(d.path, i, KiB64, `scribble-${i}`);
  t.notSame(await Promise.all(disks.map((d) => sha256File(d.path))), before, 'the disks changed');

  const busy = f.engine.startSnapshot(disks[2]!.id, { name: 'in-the-way' });
  const jobsBefore = f.engine.listJobs().length;
  t.throws(() => f.engine.groups.rollback(g.id), { code: 'DiskBusy' });
  t.equal(f.engine.listJobs().length, jobsBefore, 'no rollback started on the free disks');
  await finished(f.engine, busy);

  const r = f.engine.groups.rollback(g.name);
  t.equal(r.jobs.length, 3);
  for (const j of r.jobs) await finished(f.engine, j);
  t.same(await Promise.all(disks.map((d) => sha256File(d.path))), before, 'every disk is back, bit for bit');
});

t.test('members are deleted only with their group, but roll back and clone on their own', async (t) => {
  const f = await openSmallEngine(t);
  const [a, b] = [await smallDisk(f, 'a', 3), await smallDisk(f, 'b', 3)];
  const base = f.engine.storeStats().blocks;
  const g = await f.engine.groups.create({ disks: [a.id, b.id], name: 'pair' }).done;
  const [ma] = g.snapshotIds;
  t.equal(f.engine.storeStats().blocks, base + 6, 'six blocks stored');
  await t.rejects(f.engine.deleteSnapshot(ma!), { code: 'SnapshotInGroup' });
  await t.rejects(f.engine.removeDisk(a.id, { deleteSnapshots: true }), { code: 'SnapshotInGroup' });

  const h = await sha256File(a.path);
  fillBlock(a.path, 0, KiB64, 'changed');
  await finished(f.engine, f.engine.startRollback(a.id, ma!));
  t.equal(await sha256File(a.path), h, 'a member rolls back alone');
  const out = join(f.images, 'clone.raw');
  await finished(f.engine, f.engine.startClone(ma!, out));
  t.equal(await sha256File(out), h, 'a member clones alone');

  const deleted = f.engine.groups.delete('pair');
  t.equal(deleted.id, g.id);
  await f.engine.idle();
  t.same(f.engine.listSnapshots(), [], 'every member went with the group');
  t.same(f.engine.groups.list(), []);
  t.equal(f.engine.storeStats().blocks, base, 'their blocks were freed');
  t.equal(f.engine.getDisk(a.id).headSnapshotId, null);
});

t.test('a member that fails makes the group error and removes the partial members', async (t) => {
  const f = await openSmallEngine(t);
  const [a, b, c] = await threeDisks(f);
  await snapshot(f.engine, a!.id, 'earlier');
  const blocks = f.engine.storeStats().blocks;
  unlinkSync(c!.path);
  const g = await f.engine.groups.create({ disks: [a!.id, b!.id, c!.id], name: 'broken' }).done;
  t.equal(g.status, 'error');
  t.equal(g.error?.code, 'ImageNotFound');
  t.same(g.snapshotIds, [], 'no member left');
  t.same(f.engine.listSnapshots().map((s) => s.name), ['earlier'], 'only the snapshot from before remains');
  await f.engine.idle();
  t.equal(f.engine.storeStats().blocks, blocks, 'blocks the partial members added were released');
  t.equal(f.engine.getDisk(a!.id).headSnapshotId, f.engine.getSnapshot('earlier').id, 'heads stepped back');
  t.throws(() => f.engine.groups.rollback('broken'), { code: 'GroupNotAvailable' });
  t.equal(f.engine.groups.delete('broken').status, 'error', 'a failed group can be deleted');
});

t.test('a group whose second member fails to start reads error, and ends up listing no member', async (t) => {
  const f = await openSmallEngine(t);
  await smallDisk(f, 'a', 2);
  await smallDisk(f, 'b', 2);
  // A catalog failure at the second member's start, which the checks before cannot foresee.
  const start = f.engine.startSnapshot.bind(f.engine);
  let calls = 0;
  f.engine.startSnapshot = (disk, o) => {
    calls++;
    if (calls === 2) throw new BlocksnapError('Internal', 'the catalog could not be written');
    return start(disk, o);
  };
  t.throws(() => f.engine.groups.create({ disks: ['a', 'b'], name: 'g1' }), { code: 'Internal' });
  t.equal(f.engine.groups.get('g1').status, 'error', 'error at once');
  const member = f.engine.listJobs().find((j) => j.kind === 'snapshot')!;
  t.equal((await f.engine.waitJob(member.id)).state, 'cancelled', 'the started member was cancelled');
  // The group ends its members once their jobs have ended: in the same turn, before the next one.
  await new Promise((r) => setImmediate(r));
  t.same(f.engine.groups.get('g1').snapshotIds, [], 'and left the list');
  t.same(f.engine.listSnapshots(), [], 'no snapshot is left');
});

t.test('a group left creating by a crash becomes error at the next start, without its members', async (t) => {
  const dir = t.testdir();
  const first = await openSmallEngine(t, { dir });
  const [a, b] = [await smallDisk(first, 'a', 2), await smallDisk(first, 'b', 2)];
  const g = await first.engine.groups.create({ disks: [a.id, b.id], name: 'cut' }).done;
  await first.engine.close();
  // The crash window: members committed, the group not yet marked available.
  await crashWindow(first.dataDir, g.id);

  const second = await openSmallEngine(t, { dir });
  const after = second.engine.groups.get(g.id);
  t.equal(after.status, 'error');
  t.equal(after.error?.code, 'Interrupted');
  t.same(second.engine.listSnapshots(), [], 'the members were removed');
  t.equal(second.engine.storeStats().blocks, 0);
});

t.test('group rollback starts nothing while any member image is open in QEMU', { skip: haveQemu() }, async (t) => {
  const f = await openSmallEngine(t);
  const disks = await threeDisks(f);
  const g = await f.engine.groups.create({ disks: disks.map((d) => d.id) }).done;
  for (const [i, d] of disks.entries()) fillBlock(d.path, i, KiB64, `later-${i}`);
  const changed = await Promise.all(disks.map((d) => sha256File(d.path)));
  const sockets = mkdtempSync(join(tmpdir(), 'bsg-'));
  t.teardown(() => rmSync(sockets, { recursive: true, force: true }));
  const nbd = await holdWithNbd(disks[1]!.path, 'raw', join(sockets, 'nbd.sock'));
  try {
    // qemu-nbd makes its socket before it locks the image: wait until the lock is visible.
    for (let i = 0; i < 250 && !inUse(disks[1]!.path); i++) await new Promise((r) => setTimeout(r, 20));
    t.throws(() => f.engine.groups.rollback(g.id), { code: 'DiskInUse' });
    t.equal(f.engine.listJobs().filter((j) => j.kind === 'rollback').length, 0, 'no member rollback started');
    t.same(await Promise.all(disks.map((d) => sha256File(d.path))), changed, 'no image was touched');
  } finally {
    await nbd.stop();
  }
  const r = f.engine.groups.rollback(g.id);
  for (const j of r.jobs) await finished(f.engine, j);
  t.equal(r.jobs.length, 3, 'all three once the image is free');
});

/**
 * A group whose first member is done while another still scans: the running member is cancelled
 * once `use` has put the finished member to work. Returns the finished member's id and the group.
 */
async function failAfterFirstMember(f: ModelFixture, use: (memberId: string, small: { id: string; path: string }) => Promise<void>) {
  const small = await smallDisk(f, 'small', 2);
  // Slow on purpose: 64 MiB of new blocks, each fsynced, scanned on one thread.
  const bigPath = makeImage(join(f.images, 'big.raw'), 1024 * KiB64);
  writeAt(bigPath, 0, randomData(1024 * KiB64));
  const big = await f.engine.addDisk({ path: bigPath, name: 'big' });
  const { group, done } = f.engine.groups.create({ disks: [small.id, big.id], name: 'g' });
  const memberId = group.snapshotIds[0]!;
  while (f.engine.getSnapshot(memberId).status !== 'available') await new Promise((r) => setImmediate(r));
  await use(memberId, small);
  const bigJob = f.engine.listJobs().find((j) => j.kind === 'snapshot' && j.diskId === big.id && j.state === 'running');
  if (!bigJob) throw new Error('the big member finished before the test could cancel it: make it slower');
  f.engine.cancelJob(bigJob.id);
  const g = await done;
  return { memberId, small, g };
}

t.test('a failed group keeps a member that a copy-on-write disk was cloned from meanwhile', async (t) => {
  const f = await openSmallEngine(t);
  let content = Buffer.alloc(0);
  const { memberId, g } = await failAfterFirstMember(f, async (id, small) => {
    content = readFileSync(small.path);
    await f.engine.cloneCow(id, 'c');
  });
  t.equal(g.status, 'error');
  await f.engine.idle();
  const read = await served(f.engine, 'c').then(readAll).catch((err: Error) => err.message);
  t.same(read, content, 'the clone still reads its base: its blocks were not swept');
  t.same(g.snapshotIds, [memberId], 'the base of the clone stays in the error group');
});

t.test('a failed group keeps a member that an export serves meanwhile', async (t) => {
  const f = await openSmallEngine(t);
  let content = Buffer.alloc(0);
  const { memberId, g } = await failAfterFirstMember(f, async (id, small) => {
    content = readFileSync(small.path);
    f.engine.exports.setEndpoint('/nonexistent/nbd.sock');
    f.engine.exports.start(id, { name: 'member' });
  });
  t.equal(g.status, 'error');
  await f.engine.idle();
  const read = await readAll(f.engine.exports.lookup('member')!.backend).catch((err: Error) => err.message);
  t.same(read, content, 'the export still reads the member: its blocks were not swept');
  t.same(g.snapshotIds, [memberId], 'the served member stays in the error group');
});

t.test('a failed group keeps a member that an interrupted rollback targets, so the rollback can be rerun', async (t) => {
  const f = await openSmallEngine(t);
  let want = '';
  const { memberId, small, g } = await failAfterFirstMember(f, async (id, disk) => {
    want = await sha256File(disk.path);
    fillBlock(disk.path, 0, KiB64, 'changed');
    // Test hook: the rollback's write fails once it is journaled (as an I/O error would), which
    // leaves the journal set; a cancel cannot be relied on to land in a two-block rollback.
    const native = require('../../src/native') as { applyImage: typeof applyImage };
    const real = native.applyImage;
    native.applyImage = async () => {
      native.applyImage = real;
      throw new BlocksnapError('IOError', 'injected write failure');
    };
    const job = await f.engine.waitJob(f.engine.startRollback(disk.id, id).id);
    native.applyImage = real;
    if (job.error?.code !== 'IOError' || !f.engine.getDisk(disk.id).pendingRollback) throw new Error(`the rollback ended ${job.state} without its journal`);
  });
  t.equal(g.status, 'error');
  t.same(g.snapshotIds, [memberId], 'the rollback target stays in the error group');
  await finished(f.engine, f.engine.startRollback(small.id, memberId));
  t.equal(await sha256File(small.path), want, 'the rerun completed the rollback');
});

t.test('a group left creating by a crash keeps a member that a copy-on-write disk rests on', async (t) => {
  const dir = t.testdir();
  const first = await openSmallEngine(t, { dir });
  const [a, b] = [await smallDisk(first, 'a', 2), await smallDisk(first, 'b', 2)];
  const content = readFileSync(a.path);
  const g = await first.engine.groups.create({ disks: [a.id, b.id], name: 'cut' }).done;
  const [ma, mb] = g.snapshotIds;
  await first.engine.cloneCow(ma!, 'c');
  await first.engine.close();
  // The crash window: a member done and cloned, the group not yet settled.
  await crashWindow(first.dataDir, g.id);

  const second = await openSmallEngine(t, { dir });
  const after = second.engine.groups.get(g.id);
  t.equal(after.status, 'error');
  t.same(after.snapshotIds, [ma], 'the base of the clone stays in the error group');
  t.throws(() => second.engine.getSnapshot(mb!), { code: 'SnapshotNotFound' }, 'the other member was removed');
  await second.engine.close();
  // A third start sweeps whatever the second one freed.
  const third = await openSmallEngine(t, { dir });
  const read = await served(third.engine, 'c').then(readAll).catch((err: Error) => err.message);
  t.same(read, content, 'the clone reads its base');
});

t.test('a group left creating by a crash keeps a member that an interrupted rollback targets', async (t) => {
  const dir = t.testdir();
  const first = await openSmallEngine(t, { dir });
  const [a, b] = [await smallDisk(first, 'a', 2), await smallDisk(first, 'b', 2)];
  const want = await sha256File(a.path);
  const g = await first.engine.groups.create({ disks: [a.id, b.id], name: 'cut' }).done;
  const [ma] = g.snapshotIds;
  fillBlock(a.path, 0, KiB64, 'changed');
  await first.engine.close();
  // The crash window: a rollback of disk a to its member journaled and cut off, the group not yet settled.
  await crashWindow(first.dataDir, g.id, (catalog) => {
    catalog.putDisk({ ...catalog.getDisk(a.id)!, pendingRollback: { snapshotId: ma!, startedAt: new Date().toISOString(), jobId: 'j-0000000000000000' } });
  });

  const second = await openSmallEngine(t, { dir });
  t.same(second.engine.groups.get(g.id).snapshotIds, [ma], 'the rollback target stays in the error group');
  await finished(second.engine, second.engine.startRollback(a.id, ma!));
  t.equal(await sha256File(a.path), want, 'the rerun completed the rollback');
});

t.test('a failed group releases the member of a copy-on-write disk, its base, as a plain snapshot of that disk', async (t) => {
  const f = await openSmallEngine(t);
  const origin = await smallDisk(f, 'origin', 2);
  await f.engine.cloneCow((await snapshot(f.engine, origin.id, 'golden')).id, 'vm');
  const bigPath = makeImage(join(f.images, 'big.raw'), 1024 * KiB64);
  writeAt(bigPath, 0, randomData(1024 * KiB64)); // slow on purpose: the vm member commits first
  const big = await f.engine.addDisk({ path: bigPath, name: 'big' });
  const { group, done } = f.engine.groups.create({ disks: ['vm', big.id], name: 'g' });
  const memberId = group.snapshotIds[0]!;
  while (f.engine.getSnapshot(memberId).status !== 'available') await new Promise((r) => setImmediate(r));
  const bigJob = f.engine.listJobs().find((j) => j.kind === 'snapshot' && j.diskId === big.id && j.state === 'running');
  if (!bigJob) throw new Error('the big member finished before the test could cancel it: make it slower');
  f.engine.cancelJob(bigJob.id);
  const g = await done;
  t.equal(g.status, 'error');
  t.same(g.snapshotIds, [], 'no member left in the group');
  t.match(g.error?.message, `${memberId} left the group and is kept as a plain snapshot of its copy-on-write disk`);
  t.equal(f.engine.getSnapshot(memberId).groupId, null, 'the vm member is a plain snapshot of its disk');
  t.equal(f.engine.getDisk('vm').cow?.baseSnapshotId, memberId, 'still the disk\'s base');
  t.equal(f.engine.groups.delete(g.id).id, g.id, 'the failed group can be deleted');
});

t.test('a group left creating by a crash releases the member of a copy-on-write disk, its base', async (t) => {
  const dir = t.testdir();
  const first = await openSmallEngine(t, { dir });
  const origin = await smallDisk(first, 'origin', 2);
  const b = await smallDisk(first, 'b', 2);
  await first.engine.cloneCow((await snapshot(first.engine, origin.id, 'golden')).id, 'vm');
  const g = await first.engine.groups.create({ disks: ['vm', b.id], name: 'cut' }).done;
  const [mvm, mb] = g.snapshotIds;
  await first.engine.close();
  await crashWindow(first.dataDir, g.id);

  const second = await openSmallEngine(t, { dir });
  const after = second.engine.groups.get(g.id);
  t.equal(after.status, 'error');
  t.same(after.snapshotIds, [], 'no member left in the group');
  t.equal(second.engine.getSnapshot(mvm!).groupId, null, 'the vm member is a plain snapshot of its disk');
  t.throws(() => second.engine.getSnapshot(mb!), { code: 'SnapshotNotFound' }, 'the other member was removed');
  t.equal(second.engine.groups.delete(g.id).id, g.id, 'the failed group can be deleted');
});

t.test('group delete while a member disk\'s rollback runs is refused as DiskBusy, as snapshot delete is', async (t) => {
  const f = await openSmallEngine(t);
  const [a, b] = [await smallDisk(f, 'a', 3), await smallDisk(f, 'b', 3)];
  const g = await f.engine.groups.create({ disks: [a.id, b.id], name: 'pair' }).done;
  fillBlock(a.path, 0, KiB64, 'changed');
  const rollback = f.engine.startRollback(a.id, g.snapshotIds[0]!);
  t.throws(() => f.engine.groups.delete('pair'), { code: 'DiskBusy' });
  await finished(f.engine, rollback);
  t.equal(f.engine.groups.delete('pair').id, g.id, 'deleted once the rollback is done');
});

t.test('a failed group\'s error names the member\'s disk by name', async (t) => {
  const f = await openSmallEngine(t);
  const [a, b] = [await smallDisk(f, 'root', 2), await smallDisk(f, 'logs', 2)];
  unlinkSync(b.path);
  const g = await f.engine.groups.create({ disks: [a.id, b.id] }).done;
  t.match(g.error?.message, `member snapshot of disk logs (${b.id}): `);
});
