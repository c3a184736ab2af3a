/**
 * Ctrl-D at the Ctrl-C prompt (end of input) answers it: keep waiting, the default. The prompt
 * goes away, so a later Ctrl-C asks again; an unanswered prompt used to swallow every later
 * Ctrl-C, leaving no way to cancel or detach but to kill the CLI.
 */
import t from 'tap';
import { BIN, CLI_START_MS, ensureBuilt } from '../integration/fixtures/harness';
import { startFakeDaemon } from '../daemon/fixtures/fake-daemon';
import { waitFor } from '../daemon/fixtures/wait-for';
import { PtyRun } from '../helpers/pty';

const QUESTION = 'or keep [w]aiting? [w] ';
const count = (s: string, what: string): number => s.split(what).length - 1;

t.test('Ctrl-D at the prompt keeps waiting, and the next Ctrl-C asks again', async (t) => {
  ensureBuilt();
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const run = new PtyRun([process.execPath, BIN, 'snapshot', 'create', 'a', '--socket', d.socketPath]);
  t.teardown(() => run.kill());
  await waitFor('the job to start', () => d.engine.listJobs().length > 0, CLI_START_MS);
  const job = d.engine.lastJobId;

  run.type('\x03');
  await run.until('the question', (o) => count(o, QUESTION) === 1);
  run.type('\x04');
  // Answered, the CLI moves off the question's line.
  await run.until('the end of input to answer', (o) => o.slice(o.lastIndexOf(QUESTION)).includes('\n'));
  t.equal(d.engine.getJob(job).state, 'running', 'still waiting: the job runs');

  run.type('\x03');
  await run.until('the question again', (o) => count(o, QUESTION) === 2);
  run.type('c\r');
  t.equal(await run.exited, 130, run.output);
  t.equal(d.engine.getJob(job).state, 'cancelled');
  t.match(run.output, new RegExp(`job ${job} was cancelled`));
});
