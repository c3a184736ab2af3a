/**
 * Question: what does serving a disk (a copy-on-write clone exported over NBD) buy over scanning
 * its image? The same 16 GiB disk (¾ data in stripes, ¼ holes; scaled) gets the same 1% change
 * (1% of the 4 MiB blocks touched by four 4 KiB writes each, plus one 64 MiB sequential write)
 * twice:
 *   - as a raw image registered with `disk add`: the change is written to the file, then
 *     `snapshot create` scans the image (reads and hashes every allocated block, warm cache);
 *   - as a copy-on-write clone of the image's first snapshot, served writable over NBD: the change
 *     is written through the export with qemu-io (then flushed), then `snapshot create` takes a
 *     point-in-time snapshot that hashes only the dirty blocks.
 * The first snapshot of a clone records its full block map (the clone's chain starts there), so
 * it is shown apart from the steady state that follows. Target: the served incremental ≥ 20×
 * faster than the scanning one.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { GiB, MiB, blocks, clusteredWrites, dataBytes, sequentialChangeBytes, stripedLayout, writeImage, type PlannedWrite } from './lib/images';
import { repeat } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { ratioText, timedCall } from './lib/questions';
import type { Snapshot } from '../src/engine/types';

interface Write extends PlannedWrite { pattern: number }

/** The clustered 1% change of the other questions, each write a byte pattern qemu-io can also write. */
function changeWrites(size: number, seed: number, sequentialBytes: number): Write[] {
  return clusteredWrites(size, seed, sequentialBytes).map((w, i) => ({ ...w, pattern: 1 + ((seed * 31 + i) % 254) }));
}

function writeFile(path: string, writes: Write[]): void {
  const fd = openSync(path, 'r+');
  try {
    for (const w of writes) {
      const buf = Buffer.alloc(w.length, w.pattern);
      for (let done = 0; done < buf.length;) done += writeSync(fd, buf, done, buf.length - done, w.offset + done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The same writes through an NBD export with qemu-io, ending with a flush. */
function writeNbd(uri: string, writes: Write[]): void {
  const cmds = writes.flatMap((w) => ['-c', `write -P ${w.pattern} ${w.offset} ${w.length}`]);
  const r = spawnSync('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', uri], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0 || /error|failed/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io: ${(r.stdout + r.stderr).slice(0, 600)}`);
}

export const served: Question = {
  name: 'served',
  // The speed-up of a served snapshot over a scan grows with the disk: the target is stated for 16 GiB.
  defaultRunScale: 1,
  async run(ctx: BenchContext) {
    const s = new SectionBuilder('served', 'Incremental snapshot of a served (copy-on-write, NBD) disk against scanning its image');
    const root = ctx.dir('served-images');
    const size = blocks(16 * GiB * ctx.scale, 64 * MiB);
    const extents = stripedLayout(size);
    const img = join(root, 'served.img');
    ctx.log(`served: generating ${(size / GiB).toFixed(2)} GiB, ${(dataBytes(extents) / GiB).toFixed(2)} GiB data`);
    writeImage(img, size, extents, 'served');
    const seqBytes = sequentialChangeBytes(ctx.scale);
    const label = `${(size / GiB).toFixed(size < GiB ? 2 : 0)} GiB disk, 1% change`;
    let seed = 1;

    await ctx.withDaemon('served', { imageRoot: root, nbd: true }, async (d) => {
      const disk = await d.addDisk(img, 'scanned');
      const base = await timedCall(d, () => d.snapshot(disk, 'base'));
      s.add(`${label}: first snapshot`, 'full scan of the image (disk add + snapshot)', 'ours', await repeat(1, async () => base.sample),
        { logicalBytes: size, note: 'makes the base the clone is made from' });

      const scanned = await repeat(ctx.runs, async () => {
        writeFile(img, changeWrites(size, seed++, seqBytes));
        ctx.prepareCache('warm', img);
        return (await timedCall(d, () => d.snapshot(disk))).sample;
      });
      const scanRow = s.add(`${label}: incremental`, 'scanning the image (warm cache)', 'limit', scanned, { logicalBytes: size });

      await d.call('clone.cow', { snapshot: 'base', name: 'served' });
      const exp = await d.call<{ uri: string }>('export.start', { disk: 'served', writable: true, name: 'served' });
      writeNbd(exp.uri, changeWrites(size, seed++, seqBytes));
      const first = await timedCall(d, () => d.snapshot('served'));
      s.add(`${label}: first snapshot of the clone`, 'served disk, point-in-time', 'ours', await repeat(1, async () => first.sample),
        { logicalBytes: size, note: `records the clone's full map; ${(first.value as Snapshot).changedBlocks} map entries` });

      const servedRuns = await repeat(ctx.runs, async () => {
        writeNbd(exp.uri, changeWrites(size, seed++, seqBytes));
        const t = await timedCall(d, () => d.snapshot('served'));
        return { ...t.sample, extra: { changedBlocks: (t.value as Snapshot).changedBlocks } };
      });
      const ours = s.add(`${label}: incremental`, 'served disk, point-in-time', 'ours', servedRuns,
        { logicalBytes: size, limit: { tool: 'scanning the image (warm cache)' }, note: 'hashes only the blocks written since the last snapshot' });
      const speedup = ours.ratio === null || ours.ratio === 0 ? null : 1 / ours.ratio;
      s.target('served incremental vs scanning', '≥ 20× faster', speedup === null ? '–' : `${speedup.toFixed(1)}× faster`, speedup === null ? null : speedup >= 20);
      s.note(`Scanning incremental median ${scanRow.seconds?.toFixed(2) ?? '–'} s; served ${ratioText(ours.ratio)} of it.`);
    });
    return s.build();
  },
};
