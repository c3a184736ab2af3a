import t from 'tap';
import { ByteBudget } from '../../src/nbd/byte-budget';

t.test('room is immediate under the limit', async (t) => {
  const b = new ByteBudget(100);
  b.take(99);
  await b.room();
  t.equal(b.inFlight, 99);
});

t.test('a connection over the limit waits until bytes are given back', async (t) => {
  const b = new ByteBudget(100);
  b.take(150); // one request may exceed the limit on its own
  let entered = false;
  const waiting = b.room().then(() => { entered = true; });
  await new Promise((r) => setImmediate(r));
  t.notOk(entered, 'still over the limit');
  b.give(100);
  await waiting;
  t.ok(entered);
  t.equal(b.inFlight, 50);
});

t.test('every waiting connection goes on once the server is back under its limit', async (t) => {
  const b = new ByteBudget(10);
  b.take(10);
  const order: number[] = [];
  const first = b.room().then(() => { order.push(1); });
  const second = b.room().then(() => { order.push(2); });
  b.give(1);
  await Promise.all([first, second]);
  t.same(order, [1, 2], 'in the order they came');
});
