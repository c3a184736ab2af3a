/**
 * A job the daemon's shutdown cancelled says so: its waiters and `job show` would otherwise read
 * it as cancelled by a user.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { Catalog } from '../../src/catalog/catalog';
import { JobRunner } from '../../src/engine/jobs';
import { BlocksnapError } from '../../src/errors';

const refs = { diskId: null, snapshotId: null, target: null };

t.test('a job the daemon\'s shutdown cancelled says so; one a user cancelled before does not', async (t) => {
  const catalog = Catalog.open(t.testdir(), 64 * 1024);
  t.teardown(() => catalog.close());
  const runner = new JobRunner(catalog, new EventEmitter());
  runner.recover();
  const untilAborted = (signal: AbortSignal): Promise<never> => new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => reject(new BlocksnapError('Cancelled', 'snapshot cancelled')));
  });
  runner.start('j-0000000000000005', 'snapshot', refs, (ctl) => untilAborted(ctl.signal));
  runner.start('j-0000000000000006', 'snapshot', refs, async (ctl) => {
    await untilAborted(ctl.signal).catch(() => new Promise((r) => setTimeout(r, 50)));
    throw new BlocksnapError('Cancelled', 'snapshot cancelled');
  });
  runner.cancel('j-0000000000000006');
  await runner.shutdown();
  t.match(runner.get('j-0000000000000005'), { state: 'cancelled', error: { code: 'Cancelled', message: /^the daemon was shutting down, which cancelled the job \(snapshot cancelled\)$/ } });
  t.match(runner.get('j-0000000000000006'), { state: 'cancelled', error: { code: 'Cancelled', message: 'snapshot cancelled' } });
});
