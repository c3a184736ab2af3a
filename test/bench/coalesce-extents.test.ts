/**
 * The read of the allocated data after a scattered change: thousands of 4 KiB extents become at
 * most a bounded number of `dd` ranges, each still covering every byte of data it stands for.
 */
import t from 'tap';
import { coalesceExtents } from '../../bench/lib/system';

const covers = (ranges: Array<{ offset: number; length: number }>, e: { offset: number; length: number }): boolean =>
  ranges.some((r) => r.offset <= e.offset && e.offset + e.length <= r.offset + r.length);

t.test('extents within the bound are read as they are', async (t) => {
  const extents = [{ offset: 0, length: 10 }, { offset: 100, length: 10 }];
  t.same(coalesceExtents(extents, 2), extents);
});

t.test('the smallest gaps are joined first', async (t) => {
  const extents = [{ offset: 0, length: 10 }, { offset: 12, length: 10 }, { offset: 1000, length: 10 }, { offset: 1030, length: 5 }];
  t.same(coalesceExtents(extents, 2), [{ offset: 0, length: 22 }, { offset: 1000, length: 35 }]);
});

t.test('1,250 scattered 4 KiB extents become at most 64 ranges covering each of them', async (t) => {
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const pages = new Set<number>();
  while (pages.size < 1250) pages.add(next() % (2 ** 19)); // 4 KiB pages of a 2 GiB image
  const extents = [...pages].sort((a, b) => a - b).map((p) => ({ offset: p * 4096, length: 4096 }));
  const ranges = coalesceExtents(extents, 64);
  t.ok(ranges.length <= 64, `${ranges.length} ranges`);
  t.ok(extents.every((e) => covers(ranges, e)), 'every extent lies in a range');
  t.ok(ranges.every((r, i) => i === 0 || r.offset > ranges[i - 1]!.offset + ranges[i - 1]!.length), 'the ranges are sorted and apart');
});
