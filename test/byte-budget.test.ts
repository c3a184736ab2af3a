import t from 'tap';
import { ByteBudget } from '../src/byte-budget';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('bytes that fit are granted at once', async (t) => {
  const b = new ByteBudget(100);
  t.equal(await b.acquire(60), true);
  t.equal(await b.acquire(40), true);
  t.equal(b.inFlight, 100);
});

t.test('a request that does not fit waits until enough bytes are given back', async (t) => {
  const b = new ByteBudget(100);
  await b.acquire(80);
  let granted = false;
  const waiting = b.acquire(30).then((ok) => { granted = ok; });
  await tick();
  t.notOk(granted, 'the total would exceed the limit');
  b.release(5);
  await tick();
  t.notOk(granted, 'still 10 bytes short');
  b.release(75);
  await waiting;
  t.ok(granted);
  t.equal(b.inFlight, 30);
});

t.test('requests are granted in the order they came: a small one does not pass a large one', async (t) => {
  const b = new ByteBudget(100);
  await b.acquire(90);
  const order: number[] = [];
  const large = b.acquire(50).then(() => { order.push(50); });
  const small = b.acquire(5).then(() => { order.push(5); });
  await tick();
  t.same(order, [], 'the small one would fit, but waits behind the large one');
  b.release(90);
  await Promise.all([large, small]);
  t.same(order, [50, 5]);
});

t.test('a request larger than the whole limit is granted once nothing else is held', async (t) => {
  const b = new ByteBudget(100);
  await b.acquire(10);
  const huge = b.acquire(150);
  b.release(10);
  t.equal(await huge, true);
  t.equal(b.inFlight, 150);
});

t.test('an aborted wait takes nothing and lets the requests behind it through', async (t) => {
  const b = new ByteBudget(100);
  await b.acquire(90);
  const ac = new AbortController();
  const aborted = b.acquire(50, ac.signal);
  const behind = b.acquire(10);
  ac.abort();
  t.equal(await aborted, false);
  t.equal(await behind, true, 'no longer queued behind the aborted one');
  t.equal(b.inFlight, 100);
  t.equal(b.waiting, 0);
});
