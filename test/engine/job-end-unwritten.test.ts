/**
 * A job whose end the catalog cannot take (its data dir gone read-only, full or failing) is still
 * told as ended, with the error that ended it, by `job show` and `job list`: not as the `running`
 * its stored record says, nor as a job that does not exist. The end is written once the catalog
 * takes writes again.
 */
import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import { Catalog } from '../../src/catalog/catalog';
import { BlocksnapError } from '../../src/errors';
import { JobRunner } from '../../src/engine/jobs';

const BS = 64 * 1024;
const refs = { diskId: null, snapshotId: null, target: null };

/** A catalog whose writes fail while `broken` is set, as on a data dir remounted read-only. */
function breakable(t: Test): { catalog: Catalog; broken: { on: boolean } } {
  const catalog = Catalog.open(t.testdir(), BS);
  t.teardown(() => catalog.close());
  const broken = { on: false };
  const txn = catalog.txn.bind(catalog);
  catalog.txn = (<T>(fn: () => T): T => {
    if (broken.on) throw new BlocksnapError('IOError', 'EROFS: read-only file system, the catalog');
    return txn(fn);
  }) as typeof catalog.txn;
  return { catalog, broken };
}

t.test('a job whose end cannot be recorded is told as ended, with its error, not as running', async (t) => {
  const { catalog, broken } = breakable(t);
  const runner = new JobRunner(catalog, new EventEmitter());
  runner.recover();
  let fail!: (err: Error) => void;
  runner.start('j-0000000000000001', 'import', refs, () => new Promise((_, reject) => { fail = reject; }));
  t.equal(catalog.getJob('j-0000000000000001')?.state, 'running', 'recorded running at its start');

  broken.on = true;
  fail(new BlocksnapError('IOError', 'EROFS: read-only file system, open blocks/tmp/x'));
  const ended = await runner.wait('j-0000000000000001');
  t.match(ended, { state: 'failed', error: { code: 'IOError', message: /EROFS/ } });
  t.equal(catalog.getJob('j-0000000000000001')?.state, 'running', 'the catalog could not take the end');
  t.match(runner.get('j-0000000000000001'), { state: 'failed', error: { code: 'IOError' } }, 'job show tells the end');
  t.match(runner.list().find((j) => j.id === 'j-0000000000000001'), { state: 'failed' }, 'job list too');
});

t.test('a job never recorded at all is not JobNotFound once it ended', async (t) => {
  const { catalog, broken } = breakable(t);
  const runner = new JobRunner(catalog, new EventEmitter());
  runner.recover();
  broken.on = true;
  runner.start('j-0000000000000002', 'clone', refs, async () => { throw new BlocksnapError('IOError', 'EIO: i/o error, write'); });
  await runner.wait('j-0000000000000002');
  t.match(runner.get('j-0000000000000002'), { state: 'failed', error: { code: 'IOError', message: 'EIO: i/o error, write' } });
  t.same(runner.list().map((j) => j.id), ['j-0000000000000002']);
});

t.test('the end is written once the catalog takes writes again', async (t) => {
  const { catalog, broken } = breakable(t);
  const runner = new JobRunner(catalog, new EventEmitter());
  runner.recover();
  runner.start('j-0000000000000003', 'gc', refs, async () => 'first');
  broken.on = true;
  await runner.wait('j-0000000000000003');
  t.equal(catalog.getJob('j-0000000000000003')?.state, 'running');

  broken.on = false;
  runner.start('j-0000000000000004', 'gc', refs, async () => 'second');
  await runner.wait('j-0000000000000004');
  t.match(catalog.getJob('j-0000000000000003'), { state: 'succeeded', result: 'first' }, 'written with the next end');
  t.match(catalog.getJob('j-0000000000000004'), { state: 'succeeded', result: 'second' });
  t.same(runner.list().map((j) => j.state), ['succeeded', 'succeeded']);
});
