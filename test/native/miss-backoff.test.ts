/** MissBackoff (src/native/miss-backoff.ts): the pattern of tries after misses and hits. */
import t from 'tap';
import { MissBackoff } from '../../src/native/miss-backoff';

/** Runs n chances; `hit(i)` is the outcome of the i-th try. Returns the chances that were tried. */
function tries(b: MissBackoff, n: number, hit: (i: number) => boolean): number[] {
  const out: number[] = [];
  for (let c = 0; c < n; c++) {
    if (!b.tryNow()) continue;
    b.record(hit(out.length));
    out.push(c);
  }
  return out;
}

t.test('hits keep every chance a try', async (t) => {
  t.same(tries(new MissBackoff(6), 5, () => true), [0, 1, 2, 3, 4]);
});

t.test('misses in a row double the gap up to 2^max', async (t) => {
  // Gaps after each miss: 1, 3, 7, then capped at 2^3 - 1 = 7.
  t.same(tries(new MissBackoff(3), 40, () => false), [0, 2, 6, 14, 22, 30, 38]);
});

t.test('a hit after misses makes the next chance a try', async (t) => {
  // Tries 0, 1 miss; try 2 hits; then every chance is tried until the next miss.
  t.same(tries(new MissBackoff(6), 12, (i) => i === 2 || i === 3), [0, 2, 6, 7, 8, 10]);
});
