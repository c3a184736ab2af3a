/**
 * A job's progress events are paced by the job runner, whatever the job's own pace (gc reports
 * once a block): each event goes to every client following the job. The last value is never lost,
 * and a job that succeeded ends with its progress whole.
 */
import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import { Catalog } from '../../src/catalog/catalog';
import { JobRunner, PROGRESS_EVENT_MS } from '../../src/engine/jobs';
import type { Job } from '../../src/engine/types';

const BS = 64 * 1024;
const refs = { diskId: null, snapshotId: null, target: null };

function runnerWithEvents(t: Test): { runner: JobRunner; events: Job[] } {
  const catalog = Catalog.open(t.testdir(), BS);
  t.teardown(() => catalog.close());
  const emitter = new EventEmitter();
  const events: Job[] = [];
  emitter.on('job', (j: Job) => events.push(j));
  const runner = new JobRunner(catalog, emitter);
  runner.recover();
  return { runner, events };
}

t.test('a job that reports progress in a burst sends a few events, the last value among them before its end', async (t) => {
  const { runner, events } = runnerWithEvents(t);
  const started = performance.now();
  runner.start('j-0000000000000001', 'gc', refs, async (ctl) => {
    for (let i = 1; i <= 10_000; i++) ctl.progress(i, 10_000);
    await new Promise((r) => setImmediate(r));
  });
  const end = await runner.wait('j-0000000000000001');
  const elapsed = performance.now() - started;
  const running = events.filter((j) => j.state === 'running');
  // The start, then one per PROGRESS_EVENT_MS that passed, and the one held back at the end.
  t.ok(running.length <= 3 + elapsed / PROGRESS_EVENT_MS, `${running.length} running events in ${Math.round(elapsed)} ms`);
  t.equal(events.at(-2)?.state, 'running');
  t.equal(events.at(-2)?.doneBytes, 10_000, 'the last value went out before the end');
  t.equal(events.at(-1)?.state, 'succeeded');
  t.equal(end.doneBytes, 10_000);
});

t.test('a value held back is sent without waiting for the job to end', async (t) => {
  const { runner, events } = runnerWithEvents(t);
  let finish!: () => void;
  runner.start('j-0000000000000002', 'gc', refs, async (ctl) => {
    ctl.progress(1, 3);
    ctl.progress(2, 3);
    await new Promise<void>((r) => { finish = r; });
  });
  while (!events.some((j) => j.state === 'running' && j.doneBytes === 2)) await new Promise((r) => setTimeout(r, 20));
  t.pass('the held-back value came while the job still runs');
  finish();
  await runner.wait('j-0000000000000002');
});

t.test('a job that succeeded short of its total ends with its progress whole', async (t) => {
  const { runner, events } = runnerWithEvents(t);
  runner.start('j-0000000000000003', 'import', refs, async (ctl) => { ctl.progress(990, 1000); });
  const end = await runner.wait('j-0000000000000003');
  t.equal(end.doneBytes, 1000);
  t.equal(events.at(-1)?.doneBytes, 1000, 'its last event says so too');
  t.equal(runner.get('j-0000000000000003').doneBytes, 1000, 'and its record');
});

t.test('a job that failed keeps the progress it made', async (t) => {
  const { runner } = runnerWithEvents(t);
  runner.start('j-0000000000000004', 'import', refs, async (ctl) => {
    ctl.progress(400, 1000);
    throw new Error('broken');
  });
  const end = await runner.wait('j-0000000000000004');
  t.equal(end.state, 'failed');
  t.equal(end.doneBytes, 400);
});

t.test('a job keeps the phase it last reported, in its events and its record', async (t) => {
  const { runner, events } = runnerWithEvents(t);
  runner.start('j-0000000000000009', 'rollback', refs, async (ctl) => {
    ctl.progress(1, 4, 'comparing');
    ctl.progress(2, 6, 'writing');
    ctl.progress(3, 6);
  });
  const end = await runner.wait('j-0000000000000009');
  t.equal(end.phase, 'writing', 'a report without a phase keeps the last one');
  const phases = events.filter((j) => j.state === 'running').map((j) => j.phase);
  t.same(phases.filter((p, i) => i === 0 || p !== phases[i - 1]), ['comparing', 'writing'], 'each event carries the phase as it then was');
});
