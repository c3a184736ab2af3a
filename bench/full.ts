/**
 * Question 1: a full snapshot of a 4 GiB raw image (3 GiB data, half random and half
 * compressible, 1 GiB holes), through the daemon, against `dd`, `cp --sparse=always` and the peers.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { alternate, median, repeat, type Measured, type Sample } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { growth, ratioText, resticCompression, rssTarget, sizeText, standardImage, timedCall, tryMeasure } from './lib/questions';
import { FLOOR_TOOL, cachedHashFloor, opensslSha256 } from './lib/system';

export const full: Question = {
  name: 'full',
  async run(ctx: BenchContext) {
    const img = standardImage(ctx);
    const s = new SectionBuilder('full', `Full snapshot: ${(img.size / 2 ** 30).toFixed(2)} GiB raw image, ${(img.data / 2 ** 30).toFixed(2)} GiB data`);
    const copy = join(ctx.scratch, 'images', 'copy.img');
    let peak = 0;

    for (const [i, cache] of ctx.caches.entries()) {
      const c = `full snapshot, ${cache}`;
      // Only the cold cp is a target's limit; the other limits are context (--side-runs).
      const limitRuns = cache === 'cold' ? ctx.runs : ctx.sideRuns;
      s.add(c, 'dd bs=4M (read)', 'limit', await repeat(ctx.sideRuns, async () => { ctx.prepareCache(cache, img.path); return ctx.peers.dd(img.path); }), { logicalBytes: img.size });
      const cpRun = async (): Promise<Sample> => { ctx.prepareCache(cache, img.path); return ctx.peers.cpSparse(img.path, copy); };
      const ourRun = (run: number): Promise<Sample> => ctx.withDaemon(`full-${run}`, { imageRoot: img.root }, async (d) => {
        const disk = await d.addDisk(img.path);
        ctx.prepareCache(cache, img.path);
        const { value, bytes } = await growth(d, () => timedCall(d, () => d.snapshot(disk)));
        return { ...value.sample, growthBytes: bytes, extra: { newBytes: value.value.newBytes } } as Sample;
      });
      // The target's limit runs in turn with ours, so that the disk's drift from minute to
      // minute lands on both; the context limit (warm cp) runs apart, fewer times.
      let cp: Measured;
      let ours: Measured;
      if (limitRuns === ctx.runs) [cp, ours] = (await alternate(ctx.runs, cpRun, ourRun)) as [Measured, Measured];
      else [cp, ours] = [await repeat(limitRuns, cpRun), await repeat(ctx.runs, ourRun)];
      s.add(c, 'cp --sparse=always + sync', 'limit', cp, { logicalBytes: img.size, limit: { tool: 'dd bs=4M (read)' } });
      peak = Math.max(peak, ours.peakRssBytes ?? 0);
      const row = s.add(c, 'blocksnap snapshot (daemon)', 'ours', ours, { logicalBytes: img.size, limit: { tool: 'cp --sparse=always + sync' }, paired: limitRuns === ctx.runs });
      if (cache === 'cold') s.target('full snapshot, cold', '≤ 1.15× cp --sparse=always', ratioText(row.ratio), row.ratio === null ? null : row.ratio <= 1.15, s.samplesOf(row));

      if (i === 0) await peerRows(ctx, s, c, img.path);
    }

    // Warm and already stored: the snapshot only reads and hashes, so it shows the hashing rate.
    const c = 'unchanged re-snapshot, warm';
    // The ceiling is measured in turn with the re-snapshots, each openssl run just before one of
    // ours: in a long run the same code hashed a third slower late than alone, and a ceiling
    // taken minutes apart would put that into the ratio.
    const ceilings: number[] = [];
    const floors: number[] = [];
    const rescan = await ctx.withDaemon('full-rescan', { imageRoot: img.root }, async (d) => {
      const disk = await d.addDisk(img.path);
      await d.snapshot(disk);
      return repeat(ctx.runs, async () => {
        const speed = opensslSha256(2, ctx.scale >= 0.5 ? 3 : 1);
        if (speed !== null) ceilings.push(speed);
        ctx.prepareCache('warm', img.path);
        const floor = cachedHashFloor(img.path, 2);
        if (floor !== null) floors.push(img.data / floor);
        return (await timedCall(d, () => d.snapshot(disk))).sample;
      });
    });
    const ceiling = ceilings.length > 0 ? median(ceilings) : null;
    peak = Math.max(peak, rescan.peakRssBytes ?? 0);
    const rate = img.data / rescan.seconds;
    const floor = floors.length > 0 ? median(floors) : null;
    const floorText = floor === null ? 'python3 not installed' : `${(floor / 1e6).toFixed(0)} MB/s${ceiling ? `, ${((floor / ceiling) * 100).toFixed(0)}% of openssl` : ''}`;
    s.add(c, 'blocksnap snapshot (daemon)', 'ours', rescan, { logicalBytes: img.size, note: `hashes ${(rate / 1e6).toFixed(0)} MB/s of data; openssl 2 threads ${ceiling ? (ceiling / 1e6).toFixed(0) : '?'} MB/s; the floor (${FLOOR_TOOL}, 2 threads) ${floorText} (medians of runs taken in turn with these)` });
    s.target('hashing on both cores, warm', '≥ 85% of openssl speed -multi 2', ceiling ? `${((rate / ceiling) * 100).toFixed(0)}%` : 'n/a', ceiling ? rate / ceiling >= 0.85 : null, Math.min(rescan.samples.length, ceilings.length));
    rssTarget(s, peak, `${sizeText(img.size)}; stated for 4 GiB`);
    s.note('MB/s is of the logical (virtual) size. Growth: store (data dir) for blocksnap, repository for restic and borg, the copy for cp and qemu-img.');
    s.note('The limits: cp is followed by sync of the copy, since a snapshot is durable when it returns; peers run in the first cache state only (cold where the page cache can be dropped).');
    return s.build();
  },
};

/** qemu-img convert, restic backup (off, default), borg create (none, default) of the same image. */
export async function peerRows(ctx: BenchContext, s: SectionBuilder, c: string, image: string): Promise<void> {
  const cache = c.endsWith('cold') ? 'cold' : 'warm';
  const limit = { tool: 'cp --sparse=always + sync' };
  const p = ctx.peers;
  const copy = join(ctx.scratch, 'images', 'peer-copy.img');
  if (p.has('qemu-img')) {
    const m = await tryMeasure(s, c, 'qemu-img convert', () => repeat(ctx.peerRuns, async () => { ctx.prepareCache(cache, image); return p.qemuConvert(image, copy); }));
    if (m) s.add(c, 'qemu-img convert + sync', 'peer', m, { logicalBytes: statSize(image), limit });
  } else s.missing(c, 'qemu-img convert', ctx.peers.absent);
  for (const comp of ['none', 'default'] as const) {
    const tool = `restic backup (${resticCompression(comp)})`;
    if (!p.has('restic')) { s.missing(c, tool, ctx.peers.absent); continue; }
    const repo = join(ctx.scratch, `restic-full-${comp}`);
    const m = await tryMeasure(s, c, tool, () => repeat(ctx.peerRuns, async () => { await p.resticInit(repo); ctx.prepareCache(cache, image); return p.resticBackup(repo, image, comp); }));
    if (m) {
      s.add(c, tool, 'peer', m, { logicalBytes: statSize(image), limit });
      ctx.peerBases.set(`restic-${comp}`, repo);
    }
  }
  for (const comp of ['none', 'default'] as const) {
    const tool = `borg create (compression ${comp === 'none' ? 'none' : 'default lz4'})`;
    if (!p.has('borg')) { s.missing(c, tool, ctx.peers.absent); continue; }
    const repo = join(ctx.scratch, `borg-full-${comp}`);
    const m = await tryMeasure(s, c, tool, () => repeat(ctx.peerRuns, async () => { await p.borgInit(repo); ctx.prepareCache(cache, image); return p.borgCreate(repo, 'a0', image, comp); }));
    if (m) {
      s.add(c, tool, 'peer', m, { logicalBytes: statSize(image), limit });
      ctx.peerBases.set(`borg-${comp}`, repo);
    }
  }
}

function statSize(path: string): number {
  return statSync(path).size;
}
