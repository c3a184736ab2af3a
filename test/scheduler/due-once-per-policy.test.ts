/**
 * A pass works out each policy's due time once, however many disks the policy has: in a zone
 * with DST it costs about a millisecond, and done per disk it held the event loop (every export
 * and client of the daemon) for a second per pass of a policy over a thousand disks.
 */
import t from 'tap';
import { ManualClock } from '../helpers/clock';
import { openSmallEngine, smallDisk } from '../helpers/model';

t.test('one due-time computation per policy per pass, for a policy over many disks', async (t) => {
  const dueTimes = await import('../../src/scheduler/due-times');
  let calls = 0;
  const { Scheduler } = t.mockRequire('../../src/scheduler/scheduler', {
    '../../src/scheduler/due-times': {
      ...dueTimes,
      previousDue: (...args: Parameters<typeof dueTimes.previousDue>) => { calls++; return dueTimes.previousDue(...args); },
    },
  }) as typeof import('../../src/scheduler/scheduler');
  const clock = new ManualClock('2027-01-04T01:00:00Z');
  const f = await openSmallEngine(t, { now: () => clock.now() });
  const disks = [];
  for (let i = 0; i < 12; i++) disks.push((await smallDisk(f, `vm${i}`, 1)).id);
  f.engine.policies.create({ name: 'hourly', hours: [...Array(24).keys()], timeZone: 'Europe/Berlin' });
  f.engine.policies.bind('hourly', disks);
  const scheduler = new Scheduler(f.engine.policies, { clock });
  t.teardown(() => scheduler.stop());

  clock.set('2027-01-04T02:00:30Z');
  calls = 0;
  await scheduler.tick();
  await scheduler.idle();
  t.equal(calls, 1, 'one policy, twelve disks: one computation');
  t.equal(f.engine.listSnapshots().filter((s) => s.type === 'auto').length, 12, 'and every disk got its run');
});
