/**
 * remote verify --repair reads at most REPAIR_BATCH_BYTES of local blocks ahead of each writer
 * lease (src/engine/remote-verify.ts): the cut into batches.
 */
import t from 'tap';
import { batches } from '../../src/engine/remote-verify';

const id = (n: number): number => n;

t.test('items are cut, in order, into runs within the limit', async (t) => {
  t.same(batches([3, 4, 2, 5, 1], id, 7), [[3, 4], [2, 5], [1]]);
});

t.test('an item larger than the limit goes alone, and nothing is left out', async (t) => {
  t.same(batches([2, 9, 1], id, 4), [[2], [9], [1]]);
  t.same(batches([], id, 4), []);
});
