import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import { finished } from '../helpers/engine';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

t.test('policy records: create, find, update, delete, with their checks', async (t) => {
  const f = await openSmallEngine(t);
  const p = f.engine.policies.create({ name: 'daily', hours: [14, 2, 2], timeZone: 'Europe/Berlin', retention: { keepDaily: 7 } });
  t.match(p.id, /^p-[0-9a-f]{16}$/);
  t.same(p.hours, [2, 14], 'hours sorted, duplicates dropped');
  t.same(p.weekdays, [1, 2, 3, 4, 5, 6, 7], 'every day by default');
  t.equal(p.retention.keepDaily, 7);
  t.equal(p.retention.days, null);
  t.same(f.engine.policies.get(p.id).name, 'daily');
  t.throws(() => f.engine.policies.create({ name: 'daily', hours: [1] }), { code: 'NameTaken' });
  t.throws(() => f.engine.policies.create({ name: 'x', hours: [24] }), { code: 'InvalidArgument' });
  t.throws(() => f.engine.policies.create({ name: 'x', hours: [] }), { code: 'InvalidArgument' });
  t.throws(() => f.engine.policies.create({ name: 'x', hours: [1], weekdays: [0] }), { code: 'InvalidArgument' });
  t.throws(() => f.engine.policies.create({ name: 'x', hours: [1], timeZone: 'Mars/Olympus' }), { code: 'InvalidArgument' });
  t.throws(() => f.engine.policies.create({ name: 'bad name', hours: [1] }), { code: 'InvalidName' });
  t.throws(() => f.engine.policies.create({ name: 'x'.repeat(101), hours: [1] }), { code: 'InvalidName' });
  t.throws(() => f.engine.policies.get('nope'), { code: 'PolicyNotFound' });

  const u = f.engine.policies.update('daily', { hours: [3], retention: { days: 30 } });
  t.same(u.hours, [3]);
  t.same(u.retention.days, 30, 'retention in days replaces the keep rules');
  t.equal(u.timeZone, 'Europe/Berlin', 'what was not given stays');
  t.equal(f.engine.policies.update('daily', { name: 'nightly' }).name, 'nightly');
  t.equal(f.engine.policies.delete('nightly').id, p.id);
  t.same(f.engine.policies.list(), []);
});

t.test('a refused policy name is told the policy limit of 100, not the 128 of other names', async (t) => {
  const f = await openSmallEngine(t);
  for (const name of ['x'.repeat(129), 'x'.repeat(101), 'bad/name']) {
    t.throws(() => f.engine.policies.create({ name, hours: [1] }), { code: 'InvalidName', message: /use 1-100 characters/ }, `${name.slice(0, 12)}…`);
  }
  t.equal(f.engine.policies.create({ name: 'x'.repeat(100), hours: [1] }).name.length, 100, 'the limit itself is accepted');
});

t.test('unbinding a disk named twice (by name and by id) unbinds it once, as binding does', async (t) => {
  const f = await openSmallEngine(t);
  const a = await smallDisk(f, 'a', 1);
  f.engine.policies.create({ name: 'one', hours: [1] });
  t.same(f.engine.policies.bind('one', ['a', a.id]).diskIds, [a.id]);
  t.same(f.engine.policies.unbind('one', ['a', a.id]).diskIds, [], 'not DiskNotBound for the second mention');
});

t.test('bindings: a disk has at most one policy; unbinding checks; removed disks drop out', async (t) => {
  const f = await openSmallEngine(t);
  const a = await smallDisk(f, 'a', 1);
  const b = await smallDisk(f, 'b', 1);
  f.engine.policies.create({ name: 'one', hours: [1] });
  f.engine.policies.create({ name: 'two', hours: [2] });
  t.same([...f.engine.policies.bind('one', ['a', 'b']).diskIds].sort(), [a.id, b.id].sort());
  t.same([...f.engine.policies.bind('one', ['a']).diskIds].sort(), [a.id, b.id].sort(), 'binding again is a no-op');
  t.throws(() => f.engine.policies.bind('two', ['b']), { code: 'DiskHasPolicy' });
  t.same(f.engine.policies.get('two').diskIds, [], 'nothing bound by the refused call');
  t.throws(() => f.engine.policies.unbind('two', ['a']), { code: 'DiskNotBound' });
  t.throws(() => f.engine.policies.bind('one', ['nope']), { code: 'DiskNotFound' });
  t.same(f.engine.policies.unbind('one', ['b']).diskIds, [a.id]);
  t.same(f.engine.policies.bind('two', ['b']).diskIds, [b.id], 'free to bind elsewhere now');
  await f.engine.removeDisk('b');
  t.same(f.engine.policies.get('two').diskIds, [], 'a removed disk is no longer listed');
  f.engine.policies.delete('one');
  t.same(f.engine.policies.bind('two', ['a']).diskIds, [a.id], 'deleting a policy frees its disks');
});

t.test('policy run: snapshots every bound disk now, reports a busy one, then retention', async (t) => {
  const f = await openSmallEngine(t);
  const a = await smallDisk(f, 'a', 2);
  const b = await smallDisk(f, 'b', 2);
  f.engine.policies.create({ name: 'now', hours: [0], retention: { keepLast: 1 } });
  f.engine.policies.bind('now', ['a', 'b']);
  const first = await f.engine.policies.run('now');
  t.same(first.disks.map((d) => d.outcome), ['created', 'created']);
  const busy = f.engine.startSnapshot(b.id, { name: 'operator' });
  const second = await f.engine.policies.run('now', new Date(Date.now() + 1000));
  await finished(f.engine, busy);
  const on = (r: typeof first, id: string) => r.disks.find((e) => e.diskId === id)!;
  t.same([on(second, a.id).outcome, on(second, a.id).error], ['created', null]);
  t.same([on(second, b.id).outcome, on(second, b.id).error?.code], ['failed', 'DiskBusy']);
  t.same(on(second, a.id).expired, [on(first, a.id).snapshotId], 'keep-last 1 expired the previous automatic snapshot of a');
  t.equal(f.engine.listSnapshots(a.id).filter((s) => s.type === 'auto').length, 1);
  t.equal(f.engine.listSnapshots(b.id).length, 2, 'b keeps its auto and the operator\'s manual snapshot');
});

t.test('only a change of the schedule moves scheduleChangedAt; other updates leave it', async (t) => {
  let now = Date.parse('2027-01-04T00:00:00Z');
  const f = await openSmallEngine(t, { now: () => new Date(now) });
  const at = (iso: string): void => { now = Date.parse(iso); };
  t.equal(f.engine.policies.create({ name: 'p', hours: [2] }).scheduleChangedAt, '2027-01-04T00:00:00.000Z', 'created: counts from then');
  at('2027-01-04T01:00:00Z');
  const u = f.engine.policies.update('p', { name: 'q', description: 'd', retention: { keepLast: 2 }, hours: [2] });
  t.equal(u.updatedAt, '2027-01-04T01:00:00.000Z');
  t.equal(u.scheduleChangedAt, '2027-01-04T00:00:00.000Z', 'name, description, retention and the same hours again: unchanged');
  for (const [i, patch] of [{ hours: [3] }, { weekdays: [1, 2] }, { timeZone: 'Asia/Tokyo' }, { enabled: false }].entries()) {
    at(`2027-01-04T0${2 + i}:00:00Z`);
    t.equal(f.engine.policies.update('q', patch).scheduleChangedAt, new Date(now).toISOString(), `${Object.keys(patch)[0]} changes the schedule`);
  }
});

t.test('a policy record from before scheduleChangedAt existed counts its schedule from updatedAt', async (t) => {
  const dir = t.testdir();
  const f = await openSmallEngine(t, { dir });
  const p = f.engine.policies.create({ name: 'old', hours: [2] });
  await f.engine.close();
  const c = Catalog.open(f.dataDir, KiB64);
  const m = new ModelCatalog(c);
  const older = { ...m.getPolicy(p.id)!, updatedAt: '2026-12-31T00:00:00.000Z' };
  delete older.scheduleChangedAt;
  c.txn(() => m.putPolicy(older));
  await c.close();
  const g = await openSmallEngine(t, { dir });
  t.equal(g.engine.policies.get('old').scheduleChangedAt, '2026-12-31T00:00:00.000Z');
});

t.test('a policy run over a full automatic quota of snapshots it cannot delete names each and why', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 2 } });
  await smallDisk(f, 'vm', 2);
  f.engine.policies.create({ name: 'p', hours: [1] });
  f.engine.policies.bind('p', ['vm']);
  const first = (await f.engine.policies.run('p', new Date(Date.now() - 2000))).disks[0]!.snapshotId!;
  const second = (await f.engine.policies.run('p', new Date(Date.now() - 1000))).disks[0]!.snapshotId!;
  await f.engine.cloneCow(first, 'clone');
  f.engine.exports.setEndpoint('/run/test/nbd.sock');
  f.engine.exports.start(second, { name: 'vm-second' });
  const [e] = (await f.engine.policies.run('p')).disks;
  t.equal(e?.outcome, 'failed');
  t.equal(e?.error?.code, 'SnapshotQuotaExceeded');
  t.match(e?.error?.message, `${first} is the base of copy-on-write disk clone; ${second} is exported as vm-second`);
});

t.test('automatic snapshots the quota deleted to make room are in the run\'s expired list', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 2 } });
  await smallDisk(f, 'vm', 2);
  f.engine.policies.create({ name: 'p', hours: [1] }); // no retention: only the quota deletes
  f.engine.policies.bind('p', ['vm']);
  const first = (await f.engine.policies.run('p', new Date(Date.now() - 2000))).disks[0]!;
  await f.engine.policies.run('p', new Date(Date.now() - 1000));
  const third = (await f.engine.policies.run('p')).disks[0]!;
  t.equal(third.outcome, 'created');
  t.same(third.expired, [first.snapshotId], 'the oldest went to make room, and the run says so');
  t.same(f.engine.policies.get('p').history.at(-1)?.expired, [first.snapshotId], 'so does its history entry');
});

t.test('a snapshot another disk rests on counts towards keep-last: it is kept, yet keeps no older one with it', async (t) => {
  const f = await openSmallEngine(t);
  await smallDisk(f, 'r', 2);
  f.engine.policies.create({ name: 'p', hours: [1], retention: { keepLast: 2 } });
  f.engine.policies.bind('p', ['r']);
  const a1 = (await f.engine.policies.run('p', new Date(Date.now() - 2000))).disks[0]!;
  const a2 = (await f.engine.policies.run('p', new Date(Date.now() - 1000))).disks[0]!;
  await f.engine.cloneCow(a2.snapshotId!, 'rc');
  const a3 = (await f.engine.policies.run('p')).disks[0]!;
  t.same(a3.expired, [a1.snapshotId], 'the two newest are the rule\'s, the pinned one among them: the oldest goes');
  t.same(f.engine.listSnapshots('r').map((s) => s.id).sort(), [a2.snapshotId, a3.snapshotId].sort());
});

t.test('keep-last 1 on a copy-on-write disk keeps one automatic snapshot: its own base counts', async (t) => {
  const f = await openSmallEngine(t);
  const src = await smallDisk(f, 'src', 2);
  const base = (await finished(f.engine, f.engine.startSnapshot(src.id, { name: 'golden' }))).result as { id: string };
  await f.engine.cloneCow(base.id, 'vm');
  f.engine.policies.create({ name: 'p', hours: [1], retention: { keepLast: 1 } });
  f.engine.policies.bind('p', ['vm']);
  const first = (await f.engine.policies.run('p', new Date(Date.now() - 1000))).disks[0]!;
  const second = (await f.engine.policies.run('p')).disks[0]!;
  t.same(second.expired, [first.snapshotId], 'the previous run\'s snapshot, the disk\'s base until now, expired');
  t.same(f.engine.listSnapshots('vm').map((s) => s.id), [second.snapshotId], 'one snapshot kept: the disk\'s base');
});
