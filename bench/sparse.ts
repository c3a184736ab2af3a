/**
 * Question 3: a sparse image, 256 GiB virtual with 512 MiB of data in 8 extents. Holes must cost
 * nothing: the snapshot is compared with reading just the 512 MiB.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { GiB, KiB, MiB, dataBytes, spreadLayout, writeImage } from './lib/images';
import { repeat } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { RSS_LIMIT, growth, mibText, ratioText, timedCall, tryMeasure } from './lib/questions';

export const sparse: Question = {
  name: 'sparse',
  fullSizeInDefaultRun: 'holes must cost nothing: the point is 256 GiB of address space, and the question takes seconds',
  async run(ctx: BenchContext) {
    const root = join(ctx.scratch, 'images');
    mkdirSync(root, { recursive: true });
    const size = Math.max(1 * GiB, Math.round((256 * GiB * ctx.scale) / GiB) * GiB);
    const extentLength = Math.max(64 * KiB, Math.round((64 * MiB * ctx.scale) / (64 * KiB)) * 64 * KiB);
    const extents = spreadLayout(size, 8, extentLength);
    const img = join(root, 'sparse.img');
    if (!existsSync(img)) {
      ctx.log(`generating sparse.img: ${size / GiB} GiB virtual, ${dataBytes(extents) / MiB} MiB data`);
      writeImage(img, size, extents, 'sparse.img');
    }
    const data = dataBytes(extents);
    const s = new SectionBuilder('sparse', `Sparse image: ${size / GiB} GiB virtual, ${(data / MiB).toFixed(1)} MiB data in 8 extents`);
    const copy = join(root, 'sparse-copy.img');
    let peak = 0;

    for (const [ci, cache] of ctx.caches.entries()) {
      const c = `sparse snapshot, ${cache}`;
      s.add(c, 'dd bs=4M (the data extents)', 'limit', await repeat(ctx.runs, async () => { ctx.prepareSparse(cache, img, extents); return ctx.peers.ddExtents(img, extents); }), { logicalBytes: data });
      s.add(c, 'cp --sparse=always + sync', 'limit', await repeat(ctx.runs, async () => { ctx.prepareSparse(cache, img, extents); return ctx.peers.cpSparse(img, copy); }),
        { logicalBytes: size, limit: { tool: 'dd bs=4M (the data extents)' } });
      const ours = await repeat(ctx.runs, (run) => ctx.withDaemon(`sparse-${run}`, { imageRoot: root }, async (d) => {
        const disk = await d.addDisk(img);
        ctx.prepareSparse(cache, img, extents);
        const { value, bytes } = await growth(d, () => timedCall(d, () => d.snapshot(disk)));
        return { ...value.sample, growthBytes: bytes };
      }));
      peak = Math.max(peak, ours.peakRssBytes ?? 0);
      const row = s.add(c, 'blocksnap snapshot (daemon)', 'ours', ours, { logicalBytes: size, limit: { tool: 'dd bs=4M (the data extents)' } });
      if (ci === 0) {
        s.target(`sparse snapshot, ${cache}`, '≤ 1.3× reading the data', ratioText(row.ratio), row.ratio === null ? null : row.ratio <= 1.3);
        if (ctx.peers.has('qemu-img')) {
          const m = await tryMeasure(s, c, 'qemu-img convert + sync', () => repeat(ctx.peerRuns, async () => { ctx.prepareSparse(cache, img, extents); return ctx.peers.qemuConvert(img, copy); }));
          if (m) s.add(c, 'qemu-img convert + sync', 'peer', m, { logicalBytes: size, limit: { tool: 'dd bs=4M (the data extents)' } });
        } else s.missing(c, 'qemu-img convert', ctx.peers.absent);
      }
    }
    s.target('daemon peak RSS on the sparse image', '< 256 MiB', mibText(peak), peak > 0 ? peak < RSS_LIMIT : null);
    s.note('restic and borg are not run here: both read the holes as zeros, which on a 256 GiB image takes minutes and says nothing new.');
    return s.build();
  },
};
