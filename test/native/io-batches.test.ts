/**
 * IoBatches (src/native/io-batches.ts): what goes out at once, what is gathered, and that each
 * request keeps its own outcome. The submit function is a recorder the test resolves by hand.
 */
import t from 'tap';
import { IoBatches } from '../../src/native/io-batches';

interface Call { items: number[]; resolve: (o: Array<unknown> | undefined) => void; reject: (e: unknown) => void }

function recorder(): { calls: Call[]; submit: (items: number[]) => Promise<Array<unknown> | undefined> } {
  const calls: Call[] = [];
  return {
    calls,
    submit: (items) => new Promise((resolve, reject) => { calls.push({ items, resolve, reject }); }),
  };
}

const settled = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: Error) => e.message);

t.test('a lone request goes out at once, alone', async (t) => {
  const r = recorder();
  const b = new IoBatches(r.submit, 2, 64);
  const p = b.run(1);
  t.same(r.calls.map((c) => c.items), [[1]]);
  r.calls[0]!.resolve(undefined);
  t.equal(await settled(p), 'ok');
});

t.test('requests that arrive while the batches run leave together when one ends', async (t) => {
  const r = recorder();
  const b = new IoBatches(r.submit, 2, 64);
  const all = [1, 2, 3, 4, 5].map((i) => b.run(i));
  t.same(r.calls.map((c) => c.items), [[1], [2]], 'two in flight; 3 to 5 wait');
  r.calls[0]!.resolve(undefined);
  await settled(all[0]!);
  await new Promise((res) => setImmediate(res));
  t.same(r.calls.map((c) => c.items), [[1], [2], [3, 4, 5]]);
  r.calls[1]!.resolve(undefined);
  r.calls[2]!.resolve(undefined);
  t.same(await Promise.all(all.map(settled)), ['ok', 'ok', 'ok', 'ok', 'ok']);
});

t.test('a batch holds at most maxItems requests', async (t) => {
  const r = recorder();
  const b = new IoBatches(r.submit, 1, 2);
  const all = [1, 2, 3, 4].map((i) => b.run(i));
  r.calls[0]!.resolve(undefined);
  await settled(all[0]!);
  await new Promise((res) => setImmediate(res));
  t.same(r.calls.map((c) => c.items), [[1], [2, 3]]);
  r.calls[1]!.resolve(undefined);
  await settled(all[2]!);
  await new Promise((res) => setImmediate(res));
  t.same(r.calls.map((c) => c.items), [[1], [2, 3], [4]]);
  r.calls[2]!.resolve(undefined);
  await Promise.all(all);
});

t.test('a failed item rejects only its own request', async (t) => {
  const r = recorder();
  const b = new IoBatches(r.submit, 1, 64);
  const first = b.run(0);
  const rest = [1, 2, 3].map((i) => b.run(i));
  r.calls[0]!.resolve(undefined);
  await first;
  await new Promise((res) => setImmediate(res));
  r.calls[1]!.resolve([undefined, new Error('no space'), undefined]);
  t.same(await Promise.all(rest.map(settled)), ['ok', 'no space', 'ok']);
});

t.test('a refused batch rejects each of its requests and the next batch still runs', async (t) => {
  const r = recorder();
  const b = new IoBatches(r.submit, 1, 64);
  const first = b.run(0);
  const second = b.run(1);
  r.calls[0]!.reject(new Error('closed'));
  t.equal(await settled(first), 'closed');
  await new Promise((res) => setImmediate(res));
  t.same(r.calls.map((c) => c.items), [[0], [1]]);
  r.calls[1]!.resolve(undefined);
  t.equal(await settled(second), 'ok');
});
