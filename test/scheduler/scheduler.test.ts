/**
 * The scheduler against a real engine, with time from a ManualClock shared by both: nothing here
 * sleeps. Due times, catch-up after downtime, busy retries and skips, retention after each run.
 */
import t, { type Test } from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import type { EngineLogger } from '../../src/engine/engine';
import { Scheduler } from '../../src/scheduler/scheduler';
import { finished, snapshot } from '../helpers/engine';
import { ManualClock } from '../helpers/clock';
import { KiB64, openSmallEngine, smallDisk, type ModelFixture } from '../helpers/model';

async function setup(t: Test, startIso: string) {
  const clock = new ManualClock(startIso);
  const f = await openSmallEngine(t, { now: () => clock.now() });
  const disk = await smallDisk(f, 'vm', 2);
  const scheduler = new Scheduler(f.engine.policies, { clock });
  t.teardown(() => scheduler.stop());
  const autos = (): string[] => f.engine.listSnapshots(disk.id).filter((s) => s.type === 'auto').map((s) => s.name);
  const pass = async (iso: string): Promise<void> => {
    clock.set(iso);
    await scheduler.tick();
    await scheduler.idle();
  };
  return { clock, f, disk, scheduler, autos, pass };
}

/** Policy p due at 02:00 on a disk that an operator's snapshot keeps busy then; the scheduler has tried once. */
async function busyAtItsDueTime(t: Parameters<typeof setup>[0]) {
  const s = await setup(t, '2027-01-04T01:00:00Z');
  s.f.engine.policies.create({ name: 'p', hours: [2] });
  s.f.engine.policies.bind('p', [s.disk.id]);
  s.clock.set('2027-01-04T02:00:00Z');
  const busy = s.f.engine.startSnapshot(s.disk.id, { name: 'operator' });
  await s.scheduler.tick();
  return { ...s, busy };
}

t.test('an auto snapshot at every due time, named auto-<policy>-<UTC time>; retention by days after each run', async (t) => {
  const { f, disk, autos, pass } = await setup(t, '2027-01-04T01:00:00Z'); // a Monday
  const manual = await snapshot(f.engine, disk.id, 'keep-me');
  f.engine.policies.create({ name: 'daily', hours: [2, 14], retention: { days: 1 } });
  f.engine.policies.bind('daily', [disk.id]);

  await pass('2027-01-04T01:59:59Z');
  t.same(autos(), [], 'nothing before the first due time');
  await pass('2027-01-04T02:00:00Z');
  t.same(autos(), ['auto-daily-20270104T020000Z'], 'at 02:00');
  await pass('2027-01-04T02:30:00Z');
  t.equal(autos().length, 1, 'a due time is taken once');
  await pass('2027-01-04T14:00:05Z');
  t.same(autos(), ['auto-daily-20270104T020000Z', 'auto-daily-20270104T140005Z'], 'the name carries the UTC time of the run');
  await pass('2027-01-05T02:00:10Z');
  t.same(autos(), ['auto-daily-20270104T140005Z', 'auto-daily-20270105T020010Z'], 'the run at 02:00 the next day expired the one a day older');
  t.ok(f.engine.getSnapshot(manual.id), 'the manual snapshot is never expired by a policy');
  const history = f.engine.policies.get('daily').history;
  t.same(history.map((e) => e.outcome), ['created', 'created', 'created']);
  t.equal(history[2]!.expired.length, 1);
  t.equal(history[2]!.dueAt, '2027-01-05T02:00:00.000Z');
});

t.test('weekdays and a local time zone decide the due times', async (t) => {
  const { f, disk, autos, pass } = await setup(t, '2027-01-08T00:00:00Z'); // Friday
  f.engine.policies.create({ name: 'workdays', hours: [9], weekdays: [1, 2, 3, 4, 5], timeZone: 'Asia/Shanghai' });
  f.engine.policies.bind('workdays', [disk.id]);
  await pass('2027-01-08T01:00:00Z'); // Friday 09:00 in Shanghai
  t.same(autos(), ['auto-workdays-20270108T010000Z']);
  await pass('2027-01-09T01:00:00Z'); // Saturday
  await pass('2027-01-10T01:00:00Z'); // Sunday
  t.equal(autos().length, 1, 'no runs at the week end');
  await pass('2027-01-11T01:00:00Z'); // Monday
  t.equal(autos().length, 2);
});

t.test('due times missed while down are not replayed in a burst: one catch-up per disk', async (t) => {
  const { f, disk, autos, pass } = await setup(t, '2027-01-04T01:00:00Z');
  const other = await smallDisk(f, 'other', 1);
  f.engine.policies.create({ name: 'twice', hours: [2, 14] });
  f.engine.policies.bind('twice', [disk.id, other.id]);
  await pass('2027-01-07T20:00:00Z'); // seven due times have passed
  t.same(autos(), ['auto-twice-20270107T200000Z'], 'one catch-up snapshot');
  t.equal(f.engine.listSnapshots(other.id).length, 1, 'and one for the other disk');
  t.equal(f.engine.policies.get('twice').history[0]!.dueAt, '2027-01-07T14:00:00.000Z', 'for the newest due time');
  await pass('2027-01-07T21:00:00Z');
  t.equal(autos().length, 1, 'nothing more until the next due time');
  await pass('2027-01-08T02:00:00Z');
  t.equal(autos().length, 2);
});

t.test('a busy disk is retried until it is free within the hour', async (t) => {
  const { f, autos, scheduler, clock, busy } = await busyAtItsDueTime(t);
  t.same(autos(), [], 'busy at its due time');
  t.same([...scheduler.pending().values()].map((d) => d.toISOString()), ['2027-01-04T02:00:00.000Z'], 'waiting to retry');
  await finished(f.engine, busy);
  clock.set('2027-01-04T02:40:00Z');
  await scheduler.tick();
  await scheduler.idle();
  t.same(autos(), ['auto-p-20270104T024000Z'], 'taken once the disk was free');
  t.equal(scheduler.pending().size, 0);
  t.same(f.engine.policies.get('p').history.map((e) => [e.outcome, e.dueAt]), [['created', '2027-01-04T02:00:00.000Z']]);
});

t.test('a disk busy for the whole hour is skipped, and the skip is recorded', async (t) => {
  const { f, disk, autos, scheduler, clock } = await setup(t, '2027-01-04T01:00:00Z');
  f.engine.policies.create({ name: 'p', hours: [2, 5] });
  f.engine.policies.bind('p', [disk.id]);
  let n = 0;
  const busyAt = async (iso: string): Promise<void> => {
    clock.set(iso);
    const job = f.engine.startSnapshot(disk.id, { name: `operator-${++n}` });
    await scheduler.tick();
    await finished(f.engine, job);
  };
  await busyAt('2027-01-04T02:00:00Z');
  await busyAt('2027-01-04T02:30:00Z');
  await busyAt('2027-01-04T02:59:59Z');
  t.equal(f.engine.policies.get('p').history.length, 0, 'still retrying within the hour');
  await busyAt('2027-01-04T03:00:00Z');
  const [skip] = f.engine.policies.get('p').history;
  t.equal(skip?.outcome, 'skipped');
  t.equal(skip?.dueAt, '2027-01-04T02:00:00.000Z');
  t.equal(skip?.error?.code, 'DiskBusy');
  t.equal(scheduler.pending().size, 0);
  clock.set('2027-01-04T04:00:00Z');
  await scheduler.tick();
  await scheduler.idle();
  t.same(autos(), [], 'a skipped due time is not taken later');
  clock.set('2027-01-04T05:00:00Z');
  await scheduler.tick();
  await scheduler.idle();
  t.equal(autos().length, 1, 'the next due time runs');
});

t.test('a newer due time supersedes one still waiting for a busy disk', async (t) => {
  const { f, disk, autos, scheduler, clock } = await setup(t, '2027-01-04T01:00:00Z');
  f.engine.policies.create({ name: 'p', hours: [2, 3] });
  f.engine.policies.bind('p', [disk.id]);
  clock.set('2027-01-04T02:00:00Z');
  const job = f.engine.startSnapshot(disk.id, { name: 'operator' });
  await scheduler.tick();
  await finished(f.engine, job);
  clock.set('2027-01-04T03:00:00Z');
  await scheduler.tick();
  await scheduler.idle();
  t.same(f.engine.policies.get('p').history.map((e) => [e.outcome, e.dueAt.slice(11, 16)]), [['skipped', '02:00'], ['created', '03:00']]);
  t.equal(autos().length, 1);
});

t.test('retention by keep rules; disabled policies and unbound disks are not run', async (t) => {
  const { f, disk, autos, pass } = await setup(t, '2027-01-04T00:30:00Z');
  f.engine.policies.create({ name: 'hourly', hours: Array.from({ length: 24 }, (_, i) => i), retention: { keepLast: 2, keepDaily: 2 } });
  f.engine.policies.bind('hourly', [disk.id]);
  for (const iso of ['2027-01-04T01:00:00Z', '2027-01-04T02:00:00Z', '2027-01-04T03:00:00Z', '2027-01-05T01:00:00Z', '2027-01-05T02:00:00Z', '2027-01-06T01:00:00Z']) await pass(iso);
  // keep-last 2: 06th 01:00 and 05th 02:00; keep-daily 2 then covers days not yet covered: the 4th.
  t.same(autos(), ['auto-hourly-20270104T030000Z', 'auto-hourly-20270105T020000Z', 'auto-hourly-20270106T010000Z']);
  f.engine.policies.update('hourly', { enabled: false });
  await pass('2027-01-06T02:00:00Z');
  t.equal(autos().length, 3, 'disabled: not run');
  f.engine.policies.update('hourly', { enabled: true });
  f.engine.policies.unbind('hourly', [disk.id]);
  await pass('2027-01-06T03:00:00Z');
  t.equal(autos().length, 3, 'unbound: not run');
});

t.test('the loop: start() wakes at the due time from the clock\'s timers', async (t) => {
  const { f, disk, autos, scheduler, clock } = await setup(t, '2027-01-04T01:59:00Z');
  f.engine.policies.create({ name: 'p', hours: [2] });
  f.engine.policies.bind('p', [disk.id]);
  scheduler.start();
  clock.advance(0); // the first pass
  await new Promise((r) => setImmediate(r));
  clock.advance(60_000 + 50); // the timer armed for 02:00 (+50 ms) fires
  for (let i = 0; i < 20 && autos().length === 0; i++) {
    await new Promise((r) => setImmediate(r));
    await scheduler.idle();
  }
  t.same(autos(), ['auto-p-20270104T020000Z']);
  await scheduler.stop();
});

t.test('a changed schedule starts fresh: no catch-up for due times before the change', async (t) => {
  const { f, disk, autos, pass } = await setup(t, '2027-01-04T01:00:00Z');
  f.engine.policies.create({ name: 'p', hours: [2] });
  f.engine.policies.bind('p', [disk.id]);
  await pass('2027-01-04T02:00:00Z');
  t.equal(autos().length, 1);
  await pass('2027-01-04T03:30:00Z');
  f.engine.policies.update('p', { hours: [3, 4] });
  await pass('2027-01-04T03:31:00Z');
  t.equal(autos().length, 1, 'not owed: 03:00 came before the change');
  await pass('2027-01-04T04:00:00Z');
  t.equal(autos().length, 2, 'the new schedule runs from its next due time');
});

/** A logger that keeps the scheduler's warnings, to check what an operator is told. */
function warnings(): { log: EngineLogger; warned: Array<{ obj: Record<string, unknown>; msg: string }> } {
  const warned: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  const none = (): void => {};
  return { warned, log: { debug: none, info: none, error: none, warn: (obj, msg) => { warned.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' }); } } };
}

t.test('a wall clock set back after running ahead: warned, brought back, the next due time by the corrected clock runs', async (t) => {
  const { clock, f, disk, autos } = await setup(t, '2027-01-04T00:30:00Z');
  const { log, warned } = warnings();
  const scheduler = new Scheduler(f.engine.policies, { clock, log });
  t.teardown(() => scheduler.stop());
  const at = async (iso: string): Promise<void> => { clock.set(iso); await scheduler.tick(); await scheduler.idle(); };
  f.engine.policies.create({ name: 'daily', hours: [1] });
  f.engine.policies.bind('daily', [disk.id]);
  await at('2027-01-04T01:00:00Z');
  // The clock runs a year ahead for one pass: indistinguishable from time passing, so that due time is taken.
  await at('2028-01-04T01:00:10Z');
  t.equal(autos().length, 2);
  // NTP corrects it. Without the correction nothing would run until 2028.
  await at('2027-01-04T09:00:00Z');
  t.equal(autos().length, 2, 'nothing is owed at the moment of the correction');
  t.equal(warned.length, 1, 'one warning');
  t.match(warned[0], { obj: { policy: 'daily', diskId: disk.id, handledUpTo: '2028-01-04T01:00:00.000Z' }, msg: /wall clock was set back/ });
  await at('2027-01-04T12:00:00Z');
  t.equal(warned.length, 1, 'the correction is stored: not warned again at every pass');
  await at('2027-01-05T01:00:00Z');
  t.equal(autos().length, 3, 'the next due time by the corrected clock runs');
  t.equal(f.engine.policies.get('daily').history.at(-1)?.dueAt, '2027-01-05T01:00:00.000Z');
});

t.test('a clock set back by less than the tolerance does not retake the due time that just ran', async (t) => {
  const { clock, f, disk, autos, pass } = await setup(t, '2027-01-04T00:30:00Z');
  f.engine.policies.create({ name: 'daily', hours: [2] });
  f.engine.policies.bind('daily', [disk.id]);
  await pass('2027-01-04T02:00:30Z');
  clock.set('2027-01-04T01:58:00Z'); // stepped back 2.5 minutes, within CLOCK_STEP_TOLERANCE_MS
  await pass('2027-01-04T01:58:00Z');
  await pass('2027-01-04T02:00:00Z');
  await pass('2027-01-04T02:10:00Z');
  t.equal(autos().length, 1, '02:00 was taken once');
});

t.test('a description-only update does not cancel a due time waiting for a busy disk', async (t) => {
  const { f, autos, scheduler, clock, busy } = await busyAtItsDueTime(t);
  clock.set('2027-01-04T02:05:00Z');
  f.engine.policies.update('p', { description: 'nightly', retention: { keepLast: 3 } });
  await finished(f.engine, busy);
  clock.set('2027-01-04T02:05:30Z');
  await scheduler.tick();
  await scheduler.idle();
  t.same(autos(), ['auto-p-20270104T020530Z'], 'taken once the disk was free');
  t.same(f.engine.policies.get('p').history.map((e) => [e.outcome, e.dueAt]), [['created', '2027-01-04T02:00:00.000Z']]);
});

t.test('a schedule change while a due time waits for a busy disk: recorded as skipped, saying why', async (t) => {
  const { f, autos, scheduler, clock, busy } = await busyAtItsDueTime(t);
  clock.set('2027-01-04T02:05:00Z');
  f.engine.policies.update('p', { hours: [2, 6] });
  await finished(f.engine, busy);
  clock.set('2027-01-04T02:05:30Z');
  await scheduler.tick();
  await scheduler.idle();
  t.same(autos(), [], 'not owed under the new schedule');
  t.equal(scheduler.pending().size, 0, 'no longer waiting');
  const [skip] = f.engine.policies.get('p').history;
  t.match(skip, { outcome: 'skipped', dueAt: '2027-01-04T02:00:00.000Z', error: { code: 'DiskBusy', message: /schedule changed at 2027-01-04T02:05:00.000Z/ } });
  clock.set('2027-01-04T06:00:00Z');
  await scheduler.tick();
  await scheduler.idle();
  t.equal(autos().length, 1, 'the new schedule runs from its next due time');
});

/**
 * What a daemon killed during a scheduled snapshot leaves in the catalog: the binding's lastDueAt
 * written when the run started, and the snapshot still `creating` (the engine's recovery turns it
 * into error/Interrupted when it opens). `manual`: a `policy run` of the policy, disabled, at
 * `dueIso` instead, which leaves the binding as it was.
 */
async function killedDuringRun(t: Test, startIso: string, dueIso: string, o: { manual?: boolean } = {}): Promise<{ clock: ManualClock; f: ModelFixture; disk: { id: string }; snapId: string }> {
  const clock = new ManualClock(startIso);
  const dir = t.testdir();
  const f0 = await openSmallEngine(t, { dir, now: () => clock.now() });
  const disk = await smallDisk(f0, 'vm', 2);
  f0.engine.policies.create({ name: 'nightly', hours: [Number(dueIso.slice(11, 13))], ...(o.manual ? { enabled: false } : {}) });
  f0.engine.policies.bind('nightly', [disk.id]);
  await f0.engine.close();
  const c = Catalog.open(f0.dataDir, KiB64);
  const m = new ModelCatalog(c);
  const snapId = 's-00000000000000aa';
  c.txn(() => {
    if (!o.manual) m.putBinding({ ...m.getBinding(disk.id)!, lastDueAt: new Date(dueIso).toISOString() });
    c.putSnapshot({
      id: snapId, diskId: disk.id, name: 'auto-nightly-x', description: 'policy nightly', status: 'creating', type: 'auto', parentId: null,
      createdAt: new Date(Date.parse(dueIso) + 5000).toISOString(), completedAt: null, sizeBytes: 0, blockSize: KiB64, blockCount: 0,
      logicalBytes: 0, changedBlocks: 0, newBytes: 0, error: null, jobId: null,
    });
  });
  await c.close();
  const f = await openSmallEngine(t, { dir, now: () => clock.now() });
  return { clock, f, disk, snapId };
}

t.test('a scheduled run the daemon died in is recorded as failed (Interrupted) and its due time taken again', async (t) => {
  const { clock, f, disk, snapId } = await killedDuringRun(t, '2027-01-04T00:30:00Z', '2027-01-04T01:00:00Z');
  const { log, warned } = warnings();
  const scheduler = new Scheduler(f.engine.policies, { clock, log });
  t.teardown(() => scheduler.stop());
  clock.set('2027-01-04T01:10:00Z'); // restarted ten minutes later, before the next due time
  await scheduler.tick();
  await scheduler.idle();
  const history = f.engine.policies.get('nightly').history;
  t.match(history[0], { outcome: 'failed', dueAt: '2027-01-04T01:00:00.000Z', snapshotId: snapId, error: { code: 'Interrupted' } });
  t.match(history[1], { outcome: 'created', dueAt: '2027-01-04T01:00:00.000Z' }, 'one catch-up snapshot for the lost due time');
  t.equal(history.length, 2);
  t.match(warned, [{ obj: { policy: 'nightly', snapshotId: snapId } }], 'the operator is told');
  t.same(f.engine.listSnapshots(disk.id).map((s) => s.status), ['available'], 'the interrupted one went with the successful run');
  await scheduler.tick();
  await scheduler.idle();
  t.equal(f.engine.policies.get('nightly').history.length, 2, 'the due time is handled now: not taken a third time');
});

t.test('an interrupted run is recorded once, and owes nothing a newer schedule change replaced', async (t) => {
  const { clock, f, disk, snapId } = await killedDuringRun(t, '2027-01-04T00:30:00Z', '2027-01-04T01:00:00Z');
  clock.set('2027-01-04T01:10:00Z');
  f.engine.policies.update('nightly', { hours: [1, 3] }); // changed after the crash: 01:00 is not owed
  for (let i = 0; i < 2; i++) {
    // Two schedulers, as after two restarts: the second finds the event already written.
    const scheduler = new Scheduler(f.engine.policies, { clock });
    await scheduler.tick();
    await scheduler.idle();
  }
  const history = f.engine.policies.get('nightly').history;
  t.same(history.map((e) => [e.outcome, e.snapshotId, e.error?.code]), [['failed', snapId, 'Interrupted']]);
  t.notMatch(history[0]?.error?.message, /taken again/, 'the event does not promise a catch-up');
  t.equal(f.engine.listSnapshots(disk.id).filter((s) => s.status === 'available').length, 0, 'no catch-up');
});

t.test('a policy run of a disabled policy the daemon died in is recorded as failed (Interrupted)', async (t) => {
  const { clock, f, snapId } = await killedDuringRun(t, '2027-01-04T00:30:00Z', '2027-01-04T01:00:00Z', { manual: true });
  const scheduler = new Scheduler(f.engine.policies, { clock });
  t.teardown(() => scheduler.stop());
  clock.set('2027-01-04T01:10:00Z');
  await scheduler.tick();
  await scheduler.idle();
  const history = f.engine.policies.get('nightly').history;
  t.same(history.map((e) => [e.outcome, e.snapshotId, e.error?.code]), [['failed', snapId, 'Interrupted']]);
});

t.test('a policy run records an interrupted run of its policy before its retention deletes that snapshot', async (t) => {
  const { clock, f, snapId } = await killedDuringRun(t, '2027-01-04T00:30:00Z', '2027-01-04T01:00:00Z', { manual: true });
  clock.set('2027-01-04T01:10:00Z');
  const run = await f.engine.policies.run('nightly');
  t.same(run.disks[0]?.expired, [snapId], 'the run deleted the failed snapshot');
  const history = f.engine.policies.get('nightly').history;
  t.same(history.map((e) => [e.outcome, e.snapshotId, e.error?.code ?? null]), [['failed', snapId, 'Interrupted'], ['created', run.disks[0]!.snapshotId, null]]);
});
