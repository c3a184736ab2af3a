/**
 * Every job's end is logged once, with what the operator needs to find it again: its id, kind,
 * what it worked on and, when it failed or was cancelled, the error's code and message.
 */
import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import { Catalog } from '../../src/catalog/catalog';
import { BlocksnapError } from '../../src/errors';
import { JOB_HISTORY_LIMIT } from '../../src/catalog/schema';
import { JobRunner } from '../../src/engine/jobs';

interface Line { level: string; obj: Record<string, unknown>; msg: string | undefined }

function runnerWithLog(t: Test): { runner: JobRunner; lines: Line[] } {
  const catalog = Catalog.open(t.testdir(), 64 * 1024);
  t.teardown(() => catalog.close());
  const lines: Line[] = [];
  const at = (level: string) => (obj: object, msg?: string): void => { lines.push({ level, obj: obj as Record<string, unknown>, msg }); };
  const runner = new JobRunner(catalog, new EventEmitter(), JOB_HISTORY_LIMIT, { info: at('info'), warn: at('warn'), error: at('error') });
  runner.recover();
  return { runner, lines };
}

const refs = { diskId: 'd-00000000000000aa', snapshotId: 's-00000000000000bb', target: '/images/copy.img' };

t.test('a job that succeeds logs one info line naming it and what it worked on', async (t) => {
  const { runner, lines } = runnerWithLog(t);
  runner.start('j-0000000000000001', 'clone', refs, async () => ({ done: true }));
  await runner.wait('j-0000000000000001');
  t.match(lines, [{ level: 'info', msg: 'job succeeded', obj: { jobId: 'j-0000000000000001', kind: 'clone', state: 'succeeded', ...refs } }]);
  t.notOk('code' in lines[0]!.obj, 'no error fields');
});

t.test('a job that fails logs one error line with the code and message of its error', async (t) => {
  const { runner, lines } = runnerWithLog(t);
  runner.start('j-0000000000000002', 'snapshot', refs, async () => { throw new BlocksnapError('NoSpace', 'no space left on the data directory /d'); });
  await runner.wait('j-0000000000000002');
  t.match(lines, [{ level: 'error', msg: 'job failed', obj: { jobId: 'j-0000000000000002', kind: 'snapshot', state: 'failed', code: 'NoSpace', reason: 'no space left on the data directory /d' } }]);
});

t.test('a job a shutdown cancels logs one warn line whose reason says the daemon stopped it', async (t) => {
  const { runner, lines } = runnerWithLog(t);
  runner.start('j-0000000000000003', 'rollback', refs, (ctl) => new Promise((_, reject) => {
    ctl.signal.addEventListener('abort', () => reject(new BlocksnapError('Cancelled', 'disk d is partly rolled back')));
  }));
  await runner.shutdown();
  t.match(lines, [{ level: 'warn', msg: 'job cancelled', obj: { jobId: 'j-0000000000000003', kind: 'rollback', code: 'Cancelled', reason: /^the daemon was shutting down, which cancelled the job \(disk d is partly rolled back\)$/ } }]);
});
