/**
 * Question 4: rollback after the clustered 1% change (only the differing blocks are written), and
 * a clone of the full snapshot into a new image. Limits: the incremental snapshot of the same
 * change, plus writing with dd the blocks the rollback writes (the changed blocks that hold data
 * in the base; those that were holes there it punches instead), from a cached file of their base
 * content; `cp --sparse=always` for the clone. Peers: restoring the same image with restic and borg.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { BLOCK, clusteredChange, sequentialChangeBytes } from './lib/images';
import { median, repeat, type Measured, type Sample } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { resticCompression, rssTarget, sizeText, standardImage, timedCall, tryMeasure } from './lib/questions';
import { diskUsage } from './lib/system';

export const rollbackClone: Question = {
  name: 'rollback-clone',
  // The rollback target reads the cold figure; no target reads the clone.
  defaultCaches: ['cold'],
  async run(ctx: BenchContext) {
    const img = standardImage(ctx);
    const s = new SectionBuilder('rollback-clone', 'Rollback after the clustered 1% change, and clone of the full snapshot');
    const work = join(img.root, 'rollback.img');
    const cloned = join(img.root, 'clone.img');
    const seqBytes = sequentialChangeBytes(ctx.scale);
    const source = join(ctx.scratch, 'rollback-write.src');
    let peak = 0;

    for (const [ci, cache] of ctx.caches.entries()) {
      const rb = `rollback, ${cache}`;
      const cl = `clone, ${cache}`;
      ctx.log(`rollback-clone: ${cache}`);
      copySparse(img.path, work);
      const incSamples: Sample[] = [];
      const writeSamples: Sample[] = [];
      const { rollback, clone } = await ctx.withDaemon(`rollback-${cache}`, { imageRoot: img.root }, async (d) => {
        const disk = await d.addDisk(work);
        const base = await d.snapshot(disk, 'base');
        const rollback = await repeat(ctx.runs, async (run) => {
          const ch = clusteredChange(work, img.size, 3000 + run, seqBytes);
          ctx.prepareCache(cache, work);
          incSamples.push((await timedCall(d, () => d.snapshot(disk))).sample);
          ctx.prepareCache(cache, work);
          const { sample, value } = await timedCall(d, () => d.job('rollback', { disk, snapshot: base.id }));
          const r = value.result as { blocksWritten: number; holesPunched: number };
          // After the rollback, so that a cold run's cache drop does not take the source away.
          const limitBlocks = baseBlocksWithData(img.path, ch.blocks, source);
          writeSamples.push(await ctx.peers.ddWriteFrom(source));
          rmSync(source, { force: true });
          return { ...sample, extra: { changedBlocks: ch.blocks.size, blocksWritten: r.blocksWritten, holesPunched: r.holesPunched, limitBlocks } };
        });
        await identical(ctx, work, img.path);
        // No target reads the clone: --side-runs.
        const clone = await repeat(ctx.sideRuns, async () => {
          rmSync(cloned, { force: true });
          ctx.prepareCache(cache);
          const { sample } = await timedCall(d, () => d.job('clone', { snapshot: base.id, path: cloned }));
          return { ...sample, growthBytes: diskUsage(cloned) };
        });
        await identical(ctx, cloned, img.path);
        rmSync(cloned, { force: true });
        return { rollback, clone };
      });
      peak = Math.max(peak, rollback.peakRssBytes ?? 0, clone.peakRssBytes ?? 0);

      const inc = toMeasured(incSamples);
      const wr = toMeasured(writeSamples);
      s.add(rb, 'blocksnap incremental of the same change (daemon)', 'limit', inc, { logicalBytes: img.size });
      s.add(rb, WRITE_LIMIT, 'limit', wr, { note: `${rollback.extra.limitBlocks} blocks: the changed blocks with data in the base, from a file in the page cache` });
      const budget = inc.seconds + 1.2 * wr.seconds;
      const row = s.add(rb, 'blocksnap rollback (daemon)', 'ours', rollback, {
        logicalBytes: img.size, limit: { tool: 'blocksnap incremental of the same change (daemon)' }, paired: true,
        note: `${rollback.extra.blocksWritten} blocks written and ${rollback.extra.holesPunched} punched for ${rollback.extra.changedBlocks} changed; budget incremental + 1.2× write = ${budget.toFixed(2)} s`,
      });
      s.target(`rollback, ${cache}`, '≤ incremental + 1.2× writing the blocks it writes', `${row.seconds?.toFixed(2)} s vs ${budget.toFixed(2)} s`, row.seconds === null ? null : row.seconds <= budget, Math.min(rollback.samples.length, inc.samples.length, wr.samples.length));

      s.add(cl, 'cp --sparse=always + sync', 'limit', await repeat(ctx.sideRuns, async () => { ctx.prepareCache(cache, img.path); return ctx.peers.cpSparse(img.path, cloned); }), { logicalBytes: img.size });
      s.add(cl, 'blocksnap clone (daemon)', 'ours', clone, { logicalBytes: img.size, limit: { tool: 'cp --sparse=always + sync' } });
      if (ci === 0) {
        ctx.log(`rollback-clone: ${cache}: restores by the peers`);
        await restorePeers(ctx, s, cl, img.path, img.size);
      }
    }
    rssTarget(s, peak, `${sizeText(img.size)}; stated for 4 GiB`);
    s.note('Each rollback run applies a fresh clustered change, takes the incremental snapshot of it (the first limit), then rolls back to the base snapshot; the result and every clone are checked identical to the image with qemu-img compare (or cmp).');
    s.note('restic and borg restore the whole image: neither can rewrite only the blocks that differ, so their restore is the alternative to both rollback and clone.');
    return s.build();
  },
};

const WRITE_LIMIT = 'dd bs=4M write of the blocks the rollback writes + fsync';

/**
 * Writes to `out` (fsynced, so it stays in the page cache clean) the base content of each of
 * `blocks` that holds data in `image`: what a rollback to it writes, where it punches the rest.
 * Returns their count.
 */
function baseBlocksWithData(image: string, blocks: Set<number>, out: string): number {
  const buf = Buffer.alloc(BLOCK);
  const zero = Buffer.alloc(BLOCK);
  const src = openSync(image, 'r');
  const dst = openSync(out, 'w');
  let n = 0;
  try {
    for (const b of [...blocks].sort((x, y) => x - y)) {
      const got = readSync(src, buf, 0, BLOCK, b * BLOCK);
      if (got === 0 || buf.subarray(0, got).equals(zero.subarray(0, got))) continue;
      for (let done = 0; done < got;) done += writeSync(dst, buf, done, got - done);
      n++;
    }
    fsyncSync(dst);
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  return n;
}

function toMeasured(samples: Sample[]): Measured {
  return {
    seconds: median(samples.map((x) => x.seconds)), samples: samples.map((x) => x.seconds),
    peakRssBytes: null, growthBytes: samples[0]?.growthBytes ?? null, logicalBytes: null, extra: {},
  };
}

function copySparse(from: string, to: string): void {
  const r = spawnSync('cp', ['--sparse=always', from, to]);
  if (r.status !== 0) throw new Error(`cp ${from} ${to} failed`);
}

/** Fails the question when blocksnap's result differs from the expected image. */
async function identical(ctx: BenchContext, a: string, b: string): Promise<void> {
  if (ctx.peers.has('qemu-img')) {
    await ctx.peers.qemuCompare(a, b);
    return;
  }
  const r = spawnSync('cmp', ['-s', a, b]);
  if (r.status !== 0) throw new Error(`${a} differs from ${b}`);
}

async function restorePeers(ctx: BenchContext, s: SectionBuilder, c: string, image: string, size: number): Promise<void> {
  const cache = c.endsWith('cold') ? 'cold' : 'warm';
  const p = ctx.peers;
  const limit = { tool: 'cp --sparse=always + sync' };
  const target = join(ctx.scratch, 'restore');
  // The full question's repositories already hold this image; back it up here only without them.
  for (const comp of ['none', 'default'] as const) {
    const tool = `restic restore (${resticCompression(comp)})`;
    if (!p.has('restic')) { s.missing(c, tool, ctx.peers.absent); continue; }
    const shared = ctx.peerBases.get(`restic-${comp}`);
    const repo = shared ?? join(ctx.scratch, `restore-restic-${comp}`);
    const m = await tryMeasure(s, c, tool, async () => {
      if (shared === undefined) {
        await p.resticInit(repo);
        await p.resticBackup(repo, image, comp);
      }
      return repeat(ctx.peerRuns, async () => { ctx.prepareCache(cache); return p.resticRestore(repo, image, target); });
    });
    if (m) s.add(c, tool, 'peer', m, { logicalBytes: size, limit });
    if (shared === undefined) rmSync(repo, { recursive: true, force: true });
  }
  for (const comp of ['none', 'default'] as const) {
    const tool = `borg extract --sparse (compression ${comp === 'none' ? 'none' : 'default lz4'})`;
    if (!p.has('borg')) { s.missing(c, tool, ctx.peers.absent); continue; }
    const shared = ctx.peerBases.get(`borg-${comp}`);
    const repo = shared ?? join(ctx.scratch, `restore-borg-${comp}`);
    const m = await tryMeasure(s, c, tool, async () => {
      if (shared === undefined) {
        await p.borgInit(repo);
        await p.borgCreate(repo, 'a0', image, comp);
      }
      return repeat(ctx.peerRuns, async () => { ctx.prepareCache(cache); return p.borgExtract(repo, 'a0', target); });
    });
    if (m) s.add(c, tool, 'peer', m, { logicalBytes: size, limit });
    if (shared === undefined) rmSync(repo, { recursive: true, force: true });
  }
  // The restores are the shared repositories' last users: free their gigabytes for what follows.
  for (const repo of ctx.peerBases.values()) rmSync(repo, { recursive: true, force: true });
  ctx.peerBases.clear();
}
