/**
 * Question 2: an incremental snapshot after a 1% change, in two patterns. Clustered: 1% of the
 * 4 MiB blocks get a few 4 KiB writes each, plus one 64 MiB sequential write (how guests write).
 * Scattered: ~10,000 4 KiB writes uniform over the image, which touch nearly every block (the
 * worst case of a 4 MiB granularity). Limit: a `dd` read of the allocated data; peers: restic and
 * borg backing up the same changes on top of the same base.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { BenchContext, Cache, Question } from './lib/context';
import { BLOCK, clusteredChange, scatteredChange, sequentialChangeBytes, type Change } from './lib/images';
import { repeat, type Sample } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { growth, mibText, ratioText, resticCompression, rssTarget, sizeText, standardImage, timedCall, type StandardImage } from './lib/questions';
import { allocatedExtents, coalesceExtents } from './lib/system';

/** The most `dd` processes one read of the allocated data starts (system.ts, coalesceExtents). */
const DD_RANGES = 64;

type Pattern = 'clustered' | 'scattered';

/** The scattered case's comparison row. */
export const FULL_OF_CHANGED = 'blocksnap full snapshot of the changed image, empty store (daemon)';

function change(pattern: Pattern, ctx: BenchContext, path: string, size: number, seed: number): Change {
  return pattern === 'clustered'
    ? clusteredChange(path, size, seed, sequentialChangeBytes(ctx.scale))
    : scatteredChange(path, size, seed, Math.max(100, Math.round(10_000 * ctx.scale)));
}

export const incremental: Question = {
  name: 'incremental',
  // Both targets read the cold figures (the scattered one against a cold full snapshot).
  defaultCaches: ['cold'],
  async run(ctx: BenchContext) {
    const img = standardImage(ctx);
    const s = new SectionBuilder('incremental', 'Incremental snapshot after a 1% change');
    const work = join(img.root, 'incremental.img');
    let peak = 0;

    for (const [pi, pattern] of (['clustered', 'scattered'] as const).entries()) {
      for (const [ci, cache] of ctx.caches.entries()) {
        const c = `${pattern}, ${cache}`;
        ctx.log(`incremental: ${c}`);
        await copySparse(ctx, img, work);
        let fullSample: Sample | undefined;
        // The peers back up the very states blocksnap snapshots (after its run k, peer run k), on
        // top of the same base, instead of each resetting the image and replaying the changes.
        const peers = ci === 0 ? await PeerIncrements.start(ctx, s, c, work, pattern) : null;
        // Scattered writes leave every block changed and the former holes holding data, so the
        // fair "full snapshot" to compare with is one of the image as it is after each change,
        // into an empty store: taken right after each incremental, of the same state, so that the
        // two medians have the same number of runs and the disk's drift lands on both.
        const fullNow: Sample[] = [];
        const ours = await ctx.withDaemon(`inc-${pattern}-${cache}`, { imageRoot: img.root }, async (d) => {
          const disk = await d.addDisk(work);
          ctx.prepareCache(cache, work);
          fullSample = (await timedCall(d, () => d.snapshot(disk))).sample;
          return repeat(ctx.runs, async (run) => {
            const ch = change(pattern, ctx, work, img.size, seedOf(pi, run));
            ctx.prepareCache(cache, work);
            const { value, bytes } = await growth(d, () => timedCall(d, () => d.snapshot(disk)));
            if (peers && run < ctx.peerRuns) await peers.backup(cache, run);
            if (pattern === 'scattered') {
              fullNow.push(await ctx.withDaemon(`inc-${pattern}-${cache}-full-${run}`, { imageRoot: img.root }, async (f) => {
                const same = await f.addDisk(work);
                ctx.prepareCache(cache, work);
                return (await timedCall(f, () => f.snapshot(same))).sample;
              }));
            }
            return { ...value.sample, growthBytes: bytes, extra: { changedBlocks: ch.blocks.size, newBytes: value.value.newBytes } };
          });
        });
        peak = Math.max(peak, ours.peakRssBytes ?? 0, fullSample?.peakRssBytes ?? 0);
        // The data as the changes left it: clustered writes that land in holes add to it.
        const allocated = allocatedExtents(work) ?? img.extents;
        const ranges = coalesceExtents(allocated, DD_RANGES);
        const limit = await repeat(ctx.runs, async () => { ctx.prepareCache(cache, work); return ctx.peers.ddExtents(work, ranges); });
        const joined = ranges.length < allocated.length ? `, its ${allocated.length} extents read as ${ranges.length} ranges (the holes between read as zeros)` : '';
        s.add(c, 'dd bs=4M (allocated data)', 'limit', limit, { logicalBytes: allocated.reduce((n, e) => n + e.length, 0),
          note: (allocated === img.extents ? 'the original layout\'s extents (no python3 to list the changed image\'s)' : 'the changed image\'s data extents (SEEK_DATA)') + joined });
        s.add(c, 'blocksnap full snapshot (daemon), 1 run', 'ours', await repeat(1, async () => fullSample!), { logicalBytes: img.size, limit: { tool: 'dd bs=4M (allocated data)' } });
        const full = fullNow.length > 0 ? await repeat(fullNow.length, async (run) => fullNow[run]!) : null;
        if (full) {
          s.add(c, FULL_OF_CHANGED, 'ours', full, {
            logicalBytes: img.size, limit: { tool: 'dd bs=4M (allocated data)' },
            note: 'after each incremental, of the same state of the image',
          });
        }
        const changedBytes = (ours.extra.changedBlocks ?? 0) * BLOCK;
        const row = s.add(c, 'blocksnap incremental (daemon)', 'ours', ours, {
          logicalBytes: img.size, limit: { tool: 'dd bs=4M (allocated data)' },
          note: `${ours.extra.changedBlocks} blocks changed (${mibText(changedBytes)}); growth ${ratioText(ours.growthBytes !== null && changedBytes ? ours.growthBytes / changedBytes : null)} of them`,
        });
        if (pattern === 'clustered' && cache === 'cold') {
          s.target('incremental, clustered 1%, cold', '≤ 1.15× dd of the allocated data', ratioText(row.ratio), row.ratio === null ? null : row.ratio <= 1.15, s.samplesOf(row));
        }
        if (pattern === 'clustered' && ci === 0) {
          const g = ours.growthBytes !== null && changedBytes > 0 ? ours.growthBytes / changedBytes : null;
          s.target('store growth, clustered 1%', '≤ 1.05× the changed 4 MiB blocks', `${mibText(ours.growthBytes)} for ${mibText(changedBytes)} (${ratioText(g)})`, g === null ? null : g <= 1.05);
        }
        if (pattern === 'scattered') {
          const r = full && row.seconds !== null ? row.seconds / full.seconds : null;
          s.target(`incremental, scattered, ${cache}`, 'no slower than a full snapshot', `${ratioText(r)} a full snapshot of the same image`, r === null ? null : r <= 1.0, Math.min(row.samples.length, full?.samples.length ?? 0));
        }
        await peers?.report(img.size);
      }
    }
    rssTarget(s, peak, `${sizeText(img.size)}; stated for 4 GiB`);
    s.note('Each run applies a new change of the same pattern and snapshots it on top of the previous one. Growth is of the whole data dir (blocks and catalog) for blocksnap, of the repository for the peers.');
    s.note('The dd limit reads only the data extents of the generated layout (holes are free for every tool here).');
    return s.build();
  },
};

function seedOf(pattern: number, run: number): number {
  return 1000 * (pattern + 1) + run;
}

async function copySparse(ctx: BenchContext, img: StandardImage, to: string): Promise<void> {
  const r = spawnSync('cp', ['--sparse=always', img.path, to]);
  if (r.status !== 0) throw new Error(`cp ${img.path} ${to} failed`);
  ctx.log(`reset ${to}`);
}

/**
 * restic (compression off and default) and borg (default compression) backing up the same changes
 * on top of the same base: the full question's repositories when it ran (they already hold the
 * base image's chunks), otherwise a fresh repository with the unchanged image backed up first. A peer that fails is reported as
 * such and skipped for the rest of the case; it never ends the run.
 */
class PeerIncrements {
  private readonly tools: Array<{ tool: string; repo: string; backup: (name: string) => Promise<Sample>; samples: Sample[]; error?: Error }> = [];

  private constructor(private readonly ctx: BenchContext, private readonly s: SectionBuilder, private readonly c: string,
    private readonly work: string, private readonly pattern: Pattern) {}

  /** Call with `work` still unchanged: a fresh repository backs it up as the base. */
  static async start(ctx: BenchContext, s: SectionBuilder, c: string, work: string, pattern: Pattern): Promise<PeerIncrements> {
    const me = new PeerIncrements(ctx, s, c, work, pattern);
    const p = ctx.peers;
    const defs = [
      ...(['none', 'default'] as const).map((comp) => ({
        tool: `restic backup (${resticCompression(comp)})`, cmd: 'restic', base: `restic-${comp}`, init: (r: string) => p.resticInit(r),
        backup: (r: string) => p.resticBackup(r, work, comp),
      })),
      { tool: 'borg create (default lz4)', cmd: 'borg', base: 'borg-default', init: (r: string) => p.borgInit(r),
        backup: (r: string, name: string) => p.borgCreate(r, name, work, 'default') },
    ];
    for (const t of defs) {
      if (!p.has(t.cmd)) { s.missing(c, t.tool, p.absent); continue; }
      const shared = ctx.peerBases.get(t.base);
      const repo = shared ?? join(ctx.scratch, `inc-${t.base}`);
      const entry = { tool: t.tool, repo, backup: (name: string) => t.backup(repo, name), samples: [] as Sample[], error: undefined as Error | undefined };
      if (shared === undefined) {
        ctx.log(`incremental: ${c}: ${t.cmd} backs up the base`);
        try {
          await t.init(repo);
          await t.backup(repo, `${pattern}-base`);
        } catch (err) {
          entry.error = err as Error;
        }
      }
      me.tools.push(entry);
    }
    return me;
  }

  /** Backs the image up as it is now, with every peer still working. */
  async backup(cache: Cache, run: number): Promise<void> {
    for (const t of this.tools) {
      if (t.error) continue;
      this.ctx.log(`incremental: ${this.c}: ${t.tool}`);
      this.ctx.prepareCache(cache, this.work);
      try {
        t.samples.push(await t.backup(`${this.pattern}-${run}`));
      } catch (err) {
        t.error = err as Error;
      }
    }
  }

  async report(logicalBytes: number): Promise<void> {
    for (const t of this.tools) {
      if (t.error || t.samples.length === 0) {
        this.s.missing(this.c, t.tool, `failed: ${(t.error?.message ?? 'no run').split('\n')[0]!.slice(0, 160)}`);
        continue;
      }
      const m = await repeat(t.samples.length, async (i) => t.samples[i]!);
      this.s.add(this.c, t.tool, 'peer', m, { logicalBytes, limit: { tool: 'dd bs=4M (allocated data)' } });
    }
  }
}
