/**
 * Question 5: catalog work. Deleting a snapshot in the middle of a 32-snapshot chain must cost in
 * proportion to the blocks that snapshot changed (its delta is merged into its child), under
 * 200 ms for ≤ 1,000 blocks; `snapshot list` over the socket with 512 snapshots, p50/p99.
 *
 * The chain uses a 64 KiB block size so that a snapshot changing 1,000 blocks costs 64 MiB of
 * writes instead of 4 GiB: the catalog work per block is the same at any block size.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { DataSource, KiB, MiB, rng, writeImage } from './lib/images';
import { median, percentile, since, type Measured } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { rssTarget, sizeText } from './lib/questions';

const SMALL_BLOCK = 64 * KiB;
const CHAIN = 32;

export const deleteList: Question = {
  name: 'delete-list',
  async run(ctx: BenchContext) {
    const s = new SectionBuilder('delete-list', 'Delete of a middle snapshot of a 32-snapshot chain; snapshot list with 512 snapshots');
    const root = ctx.dir('images-catalog');
    const size = Math.max(16 * MiB, Math.round((256 * MiB * ctx.scale) / MiB) * MiB);
    const nblocks = size / SMALL_BLOCK;
    // Position in the chain → blocks that snapshot changes; the others change 2 blocks each.
    const middles = new Map<number, number>([[8, 10], [16, 100], [24, 1000]].map(([pos, n]) => [pos!, Math.min(nblocks, Math.max(1, Math.round(n! * Math.max(ctx.scale, 0.05))))]));
    const deletes = new Map<number, number[]>();
    let peak = 0;

    // 512 snapshots of one disk: above the default quota of 256 manual snapshots per disk.
    await ctx.withDaemon('catalog', { imageRoot: root, blockSize: SMALL_BLOCK, manualSnapshotQuota: 1024 }, async (d) => {
      for (let run = 0; run < ctx.runs; run++) {
        const path = join(root, `chain-${run}.img`);
        writeImage(path, size, [{ offset: 0, length: size, kind: 'random' }], `chain-${run}`);
        const disk = await d.addDisk(path);
        const ids: string[] = [];
        const r = rng(500 + run);
        const src = new DataSource(`chain-changes-${run}`);
        for (let i = 0; i < CHAIN; i++) {
          if (i > 0) touchBlocks(path, nblocks, middles.get(i) ?? 2, r, src);
          ids.push((await d.snapshot(disk)).id);
        }
        ctx.log(`chain ${run}: ${CHAIN} snapshots`);
        for (const [pos, n] of middles) {
          d.resetPeak();
          const t0 = process.hrtime.bigint();
          await d.call('snapshot.delete', { snapshot: ids[pos] });
          const secs = since(t0);
          peak = Math.max(peak, d.peakRss() ?? 0);
          deletes.set(n, [...(deletes.get(n) ?? []), secs]);
        }
      }

      for (const [n, samples] of deletes) {
        const m = measured(samples);
        const row = s.add(`delete a middle snapshot that changed ${n} blocks`, 'blocksnap snapshot delete (socket)', 'ours', m,
          { note: `${((m.seconds * 1e6) / n).toFixed(0)} µs per changed block` });
        if (n <= 1000 && n === Math.max(...middles.values())) {
          s.target(`delete, ${n} changed blocks`, '< 200 ms (stated for 1,000 blocks)', `${((row.seconds ?? 0) * 1000).toFixed(1)} ms`, row.seconds === null ? null : row.seconds < 0.2, row.samples.length);
        }
      }

      const count = Math.max(16, Math.round(512 * ctx.scale));
      const tiny = join(root, 'list.img');
      writeImage(tiny, 1 * MiB, [{ offset: 0, length: 64 * KiB, kind: 'random' }], 'list');
      const disk = await d.addDisk(tiny);
      for (let i = 0; i < count; i++) await d.snapshot(disk);
      ctx.log(`${count} snapshots of one disk`);
      const calls = Math.max(10, Math.round(20 * Math.min(1, ctx.scale * 4)));
      for (const [label, params] of [['of the disk', { disk }], ['all disks', {}]] as const) {
        const lat: number[] = [];
        d.resetPeak();
        for (let i = 0; i < calls; i++) {
          const t0 = process.hrtime.bigint();
          const list = await d.call<unknown[]>('snapshot.list', params);
          lat.push(since(t0));
          if (label === 'of the disk' && list.length !== count) throw new Error(`snapshot.list returned ${list.length} snapshots, expected ${count}`);
        }
        peak = Math.max(peak, d.peakRss() ?? 0);
        const m = measured(lat);
        m.seconds = percentile(lat, 50);
        s.add(`snapshot list ${label}, ${count}${label === 'all disks' ? '+' : ''} snapshots`, 'blocksnap snapshot.list (socket), p50', 'ours', m,
          { note: `p99 ${(percentile(lat, 99) * 1000).toFixed(2)} ms over ${calls} calls` });
      }
    });
    rssTarget(s, peak, `chains of a ${sizeText(size)}; stated for 256 MiB`);
    s.note(`Chains of ${CHAIN} snapshots of a ${size / MiB} MiB image with 64 KiB blocks; each of ${ctx.runs} chains has three middle snapshots deleted in turn. Times are round trips over the socket, as a client sees them.`);
    return s.build();
  },
};

function measured(samples: number[]): Measured {
  return { seconds: median(samples), samples, peakRssBytes: null, growthBytes: null, logicalBytes: null, extra: {} };
}

/** Writes 4 KiB of new data into `n` distinct random blocks. */
function touchBlocks(path: string, nblocks: number, n: number, r: () => number, src: DataSource): void {
  const picked = new Set<number>();
  while (picked.size < Math.min(n, nblocks)) picked.add(Math.floor(r() * nblocks));
  const fd = openSync(path, 'r+');
  try {
    for (const b of picked) writeSync(fd, src.next(4 * KiB, 'random'), 0, 4 * KiB, b * SMALL_BLOCK);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
