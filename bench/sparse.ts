/**
 * Question 3: a sparse image, 256 GiB virtual with 512 MiB of data in 8 extents. Holes must cost
 * nothing: the snapshot is compared with reading just the 512 MiB.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { GiB, KiB, MiB, dataBytes, spreadLayout, writeImage, type Extent } from './lib/images';
import { repeat, type Sample } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { growth, ratioText, rssTarget, timedCall, tryMeasure } from './lib/questions';
import { runCommand } from './lib/system';

const DD = 'dd bs=4M (the data extents)';
const READ_AND_WRITE = 'reference workload: dd of the extents + dd oflag=direct of as many bytes, at once';

/**
 * A reference workload, not a lower bound: the extents read like the `dd` limit while as many
 * bytes are written with O_DIRECT and fsynced. It shows what a disk whose reads and writes share
 * one budget (a virtual disk with a throughput cap) takes for both at once, done one plain way;
 * O_DIRECT at queue depth 1 is slower than buffered writes synced at the end, so a snapshot can
 * beat it. The bytes written come from RAM (`/dev/shm` when there is one), so that only the image
 * is read.
 */
async function readWhileWriting(ctx: BenchContext, img: string, extents: Extent[], src: string): Promise<Sample> {
  const out = join(ctx.scratch, 'read-write.out');
  const reads = extents.map((e) => `dd if='${img}' of=/dev/null bs=4M iflag=skip_bytes,count_bytes skip=${e.offset} count=${e.length} status=none`).join(' && ');
  try {
    const r = await runCommand('sh', ['-c', `dd if='${src}' of='${out}' bs=4M oflag=direct conv=fsync status=none & w=$!; ${reads} && wait $w`]);
    return { seconds: r.seconds, peakRssBytes: r.peakRssBytes };
  } finally {
    rmSync(out, { force: true });
  }
}

export const sparse: Question = {
  name: 'sparse',
  // Holes must cost nothing: the point is 256 GiB of address space, and the question takes seconds.
  defaultRunScale: 1,
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
      s.add(c, DD, 'limit', await repeat(ctx.runs, async () => { ctx.prepareSparse(cache, img, extents); return ctx.peers.ddExtents(img, extents); }), { logicalBytes: data });
      if (ci === 0) {
        const src = join(existsSync('/dev/shm') ? '/dev/shm' : ctx.scratch, `blocksnap-bench-${process.pid}.src`);
        try {
          // O_DIRECT is refused by some scratch filesystems (tmpfs): the row then says so.
          const m = await tryMeasure(s, c, READ_AND_WRITE, async () => {
            await runCommand('dd', ['if=/dev/urandom', `of=${src}`, 'bs=4M', 'iflag=count_bytes', `count=${data}`, 'status=none']);
            return repeat(ctx.runs, async () => { ctx.prepareSparse(cache, img, extents); return readWhileWriting(ctx, img, extents, src); });
          });
          if (m) s.add(c, READ_AND_WRITE, 'limit', m, { logicalBytes: data, limit: { tool: DD } });
        } finally {
          rmSync(src, { force: true });
        }
      }
      s.add(c, 'cp --sparse=always + sync', 'limit', await repeat(ctx.runs, async () => { ctx.prepareSparse(cache, img, extents); return ctx.peers.cpSparse(img, copy); }),
        { logicalBytes: size, limit: { tool: DD } });
      const ours = await repeat(ctx.runs, (run) => ctx.withDaemon(`sparse-${run}`, { imageRoot: root }, async (d) => {
        const disk = await d.addDisk(img);
        ctx.prepareSparse(cache, img, extents);
        const { value, bytes } = await growth(d, () => timedCall(d, () => d.snapshot(disk)));
        return { ...value.sample, growthBytes: bytes };
      }));
      peak = Math.max(peak, ours.peakRssBytes ?? 0);
      const row = s.add(c, 'blocksnap snapshot (daemon)', 'ours', ours, { logicalBytes: size, limit: { tool: DD } });
      if (ci === 0) {
        s.target(`sparse snapshot, ${cache}`, '≤ 1.3× reading the data', ratioText(row.ratio), row.ratio === null ? null : row.ratio <= 1.3, s.samplesOf(row));
        const budget = s.find(c, READ_AND_WRITE);
        if (budget?.seconds && row.seconds) {
          s.note(`${c}: the snapshot took ${(row.seconds / budget.seconds).toFixed(2)}× the reference workload's time (${READ_AND_WRITE}).`);
        }
        if (ctx.peers.has('qemu-img')) {
          const m = await tryMeasure(s, c, 'qemu-img convert + sync', () => repeat(ctx.peerRuns, async () => { ctx.prepareSparse(cache, img, extents); return ctx.peers.qemuConvert(img, copy); }));
          if (m) s.add(c, 'qemu-img convert + sync', 'peer', m, { logicalBytes: size, limit: { tool: DD } });
        } else s.missing(c, 'qemu-img convert', ctx.peers.absent);
      }
    }
    rssTarget(s, peak, `the sparse ${size / GiB} GiB image; stated for 256 GiB`);
    s.note('restic and borg are not run here: both read the holes as zeros, which on a 256 GiB image takes minutes and says nothing new.');
    return s.build();
  },
};
