/**
 * StoreLock (src/engine/locks.ts): a wait for the lock is one its job can leave. A wait whose
 * signal aborts ends at once, holding nothing, and the queue goes on as if it had never waited.
 */
import t from 'tap';
import { StoreLock } from '../../src/engine/locks';

const live = (): AbortSignal => new AbortController().signal;

/** Settles `p` into a record of its outcome, so a test can look without awaiting it. */
function watch<T>(p: Promise<T>): { state: 'pending' | 'granted' | 'refused'; value?: T; err?: unknown } {
  const w: { state: 'pending' | 'granted' | 'refused'; value?: T; err?: unknown } = { state: 'pending' };
  p.then((value) => { w.state = 'granted'; w.value = value; }, (err: unknown) => { w.state = 'refused'; w.err = err; });
  return w;
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('a shared wait behind an exclusive holder ends Cancelled as soon as its signal aborts, holding nothing', async (t) => {
  const lock = new StoreLock();
  const releaseGc = await lock.acquireExclusive(live());
  const abort = new AbortController();
  const wait = lock.acquireShared(abort.signal);
  t.equal(lock.waiting, 1);
  abort.abort();
  await t.rejects(wait, { code: 'Cancelled', message: 'the job was cancelled while waiting for the store lock' });
  t.equal(lock.waiting, 0, 'it left the queue');
  releaseGc();
  t.equal(lock.sharedHolders, 0, 'the release granted it nothing');
  t.ok(lock.tryExclusive(), 'the lock is free');
});

t.test('a queued exclusive holder that is cancelled lets the shared waiters behind it in', async (t) => {
  const lock = new StoreLock();
  const releaseImport = await lock.acquireShared(live());
  const abort = new AbortController();
  const gc = watch(lock.acquireExclusive(abort.signal));
  // Behind a queued gc, a new snapshot waits although only shared holders hold the lock.
  const snapshot = watch(lock.acquireShared(live()));
  await settle();
  t.equal(snapshot.state, 'pending');
  abort.abort();
  await settle();
  t.match(gc, { state: 'refused', err: { code: 'Cancelled' } });
  t.equal(snapshot.state, 'granted', 'the snapshot holds the lock beside the import');
  t.equal(lock.sharedHolders, 2);
  releaseImport();
  snapshot.value!();
  t.ok(lock.tryExclusive(), 'and both give it back');
});

t.test('a waiter cancelled in the middle of the queue leaves the ones around it their turns', async (t) => {
  const lock = new StoreLock();
  const releaseFirst = await lock.acquireExclusive(live());
  const abort = new AbortController();
  const before = watch(lock.acquireExclusive(live()));
  const cancelled = watch(lock.acquireShared(abort.signal));
  const after = watch(lock.acquireShared(live()));
  abort.abort();
  releaseFirst();
  await settle();
  t.equal(before.state, 'granted', 'the exclusive waiter ahead of it is served first');
  t.equal(cancelled.state, 'refused');
  t.equal(after.state, 'pending');
  before.value!();
  await settle();
  t.equal(after.state, 'granted', 'then the one behind it');
  t.equal(lock.sharedHolders, 1);
});

t.test('a signal aborted before the call takes nothing, even from a free lock', async (t) => {
  const lock = new StoreLock();
  const abort = new AbortController();
  abort.abort();
  await t.rejects(lock.acquireShared(abort.signal), { code: 'Cancelled' });
  await t.rejects(lock.acquireExclusive(abort.signal), { code: 'Cancelled' });
  t.equal(lock.sharedHolders, 0);
  t.equal(lock.waiting, 0);
  t.ok(lock.tryExclusive());
});

t.test('an abort after the grant changes nothing: the holder keeps the lock until it releases it', async (t) => {
  let freed = 0;
  const lock = new StoreLock(() => { freed++; });
  const abort = new AbortController();
  const release = await lock.acquireShared(abort.signal);
  abort.abort();
  t.equal(lock.sharedHolders, 1);
  release();
  t.equal(freed, 1, 'the release frees the lock once');
});
