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
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext, Question } from './lib/context';
import { BLOCK, DataSource, GiB, MiB, blocks, clusteredWrites, dataBytes, sequentialChangeBytes, stripedLayout, writeImage, type PlannedWrite } from './lib/images';
import { repeat } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { ratioText, timedCall } from './lib/questions';
import { readAndStore } from './lib/read-and-store';
import { canDropCaches } from './lib/system';
import type { Snapshot } from '../src/engine/types';

/**
 * The data a change writes, random and new for each change, in a file qemu-io can write from
 * (`write -s`, which takes each write's bytes from the start of the file). Every write starts at
 * the file's start: the 4 KiB writes repeat one page, but each lands in a 4 MiB block of its own
 * content, and the blocks of the sequential write all differ, so nothing deduplicates that would
 * not on a real disk (bench/lib/images.ts).
 */
interface Source { path: string; data: Buffer }

function randomSource(dir: string, tag: string, length: number): Source {
  const path = join(dir, `served-${process.pid}-${tag}.src`);
  const data = new DataSource(`served-${tag}`).next(length, 'random');
  writeFileSync(path, data);
  return { path, data };
}

/** The clustered 1% change of the other questions, and its data. */
function change(dir: string, size: number, seed: number, sequentialBytes: number): { writes: PlannedWrite[]; src: Source } {
  const writes = clusteredWrites(size, seed, sequentialBytes);
  return { writes, src: randomSource(dir, String(seed), Math.max(...writes.map((w) => w.length))) };
}

function writeFile(path: string, writes: PlannedWrite[], src: Source): void {
  const fd = openSync(path, 'r+');
  try {
    for (const w of writes) {
      for (let done = 0; done < w.length;) done += writeSync(fd, src.data, done, w.length - done, w.offset + done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The same writes through an NBD export with qemu-io, ending with a flush. */
function writeNbd(uri: string, writes: PlannedWrite[], src: Source): void {
  const cmds = writes.flatMap((w) => ['-c', `write -s ${src.path} ${w.offset} ${w.length}`]);
  const r = spawnSync('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', uri], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0 || /error|failed/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io: ${(r.stdout + r.stderr).slice(0, 600)}`);
}

/**
 * A guest that wrote and has not flushed yet: qemu-io stays connected (the export flushes when a
 * client leaves) with QEMU's cache mode `unsafe`, which sends no flush. Resolves once the write is
 * acknowledged; the returned function disconnects.
 */
async function writeNbdUnflushed(uri: string, w: PlannedWrite, src: Source): Promise<() => Promise<void>> {
  const q = spawn('qemu-io', ['-f', 'raw', '-t', 'unsafe', uri], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((resolve) => q.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const check = (c: Buffer): void => {
      out += c.toString();
      if (/wrote \d+\/\d+ bytes/.test(out)) resolve();
      else if (/error|failed/i.test(out)) reject(new Error(`qemu-io: ${out.slice(0, 600)}`));
    };
    q.stdout!.on('data', check);
    q.stderr!.on('data', check);
    q.on('exit', () => reject(new Error(`qemu-io exited before the write: ${out.slice(0, 600)}`)));
    q.stdin!.write(`write -s ${src.path} ${w.offset} ${w.length}\n`);
  });
  return async () => { q.stdin!.end('quit\n'); await exited; };
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
    const srcDir = existsSync('/dev/shm') ? '/dev/shm' : ctx.scratch;
    let seed = 1;
    // Each change's data is written, then its source removed: a source kept in /dev/shm is RAM.
    const applied = <T>(fn: (writes: PlannedWrite[], src: Source) => T): T => {
      const { writes, src } = change(srcDir, size, seed++, seqBytes);
      try {
        return fn(writes, src);
      } finally {
        rmSync(src.path, { force: true });
      }
    };

    await ctx.withDaemon('served', { imageRoot: root, nbd: true, infoLog: true }, async (d) => {
      const disk = await d.addDisk(img, 'scanned');
      const base = await timedCall(d, () => d.snapshot(disk, 'base'));
      s.add(`${label}: first snapshot`, 'full scan of the image (snapshot of the added disk)', 'ours', await repeat(1, async () => base.sample),
        { logicalBytes: size, note: 'makes the base the clone is made from' });

      const scanned = await repeat(ctx.runs, async () => {
        applied((writes, src) => writeFile(img, writes, src));
        ctx.prepareCache('warm', img);
        return (await timedCall(d, () => d.snapshot(disk))).sample;
      });
      const scanRow = s.add(`${label}: incremental`, 'scanning the image (warm cache)', 'limit', scanned, { logicalBytes: size });

      await d.call('clone.cow', { snapshot: 'base', name: 'served' });
      const exp = await d.call<{ uri: string }>('export.start', { disk: 'served', writable: true, name: 'served' });
      applied((writes, src) => writeNbd(exp.uri, writes, src));
      const first = await timedCall(d, () => d.snapshot('served'));
      s.add(`${label}: first snapshot of the clone`, 'served disk, point-in-time', 'ours', await repeat(1, async () => first.sample),
        { logicalBytes: size, note: `records the clone's full map; ${(first.value as Snapshot).changedBlocks} map entries` });

      let last: { writes: PlannedWrite[]; stored: number } = { writes: [], stored: 0 };
      const servedRuns = await repeat(ctx.runs, async () => {
        const writes = applied((w, src) => { writeNbd(exp.uri, w, src); return w; });
        const t = await timedCall(d, () => d.snapshot('served'));
        last = { writes, stored: Math.round((t.value as Snapshot).newBytes / BLOCK) };
        return { ...t.sample, extra: { changedBlocks: (t.value as Snapshot).changedBlocks } };
      });
      const ours = s.add(`${label}: incremental`, 'served disk, point-in-time', 'ours', servedRuns,
        { logicalBytes: size, limit: { tool: 'scanning the image (warm cache)' }, note: 'hashes only the blocks written since the last snapshot' });
      const speedup = ours.ratio === null || ours.ratio === 0 ? null : 1 / ours.ratio;
      s.target('served incremental vs scanning', '≥ 20× faster', speedup === null ? '–' : `${speedup.toFixed(1)}× faster`, speedup === null ? null : speedup >= 20, s.samplesOf(ours));
      s.note(`Scanning incremental median ${scanRow.seconds?.toFixed(2) ?? '–'} s; served ${ratioText(ours.ratio)} of it.`);

      // A reference workload for the I/O right after the writes (bench/lib/read-and-store.ts): a
      // block with a few 4 KiB writes is stored whole, so the rest of its base block is read
      // (cold: the copy-ups read 64 KiB of it), while the new blocks are written durably.
      if (canDropCaches()) {
        const partial = [...new Set(last.writes.filter((w) => w.length < BLOCK).map((w) => Math.floor(w.offset / BLOCK) * BLOCK))]
          .filter((o) => extents.some((e) => e.offset < o + BLOCK && o < e.offset + e.length));
        const referenceTool = `reference workload: ${partial.length} base blocks read cold while ${last.stored} blocks are stored (fdatasync), at once`;
        const reference = s.add(`${label}: incremental`, referenceTool, 'limit',
          await repeat(ctx.runs, async () => { ctx.prepareCache('cold'); return readAndStore(img, partial, join(ctx.scratch, 'served-floor'), last.stored); }),
          { logicalBytes: size, limit: { tool: 'scanning the image (warm cache)' }, note: 'the reads and writes a served snapshot cannot avoid, done one plain way (one reader, 3 writers): not a lower bound' });
        if (reference.seconds && ours.seconds) {
          s.note(`The served snapshot took ${(ours.seconds / reference.seconds).toFixed(2)}× the reference workload's time for its reads and writes; ` +
            `a snapshot as fast as that workload would be ${scanRow.seconds ? (scanRow.seconds / reference.seconds).toFixed(1) : '–'}× faster than scanning.`);
        }
      }

      // The instant after writes the guest never flushed: the snapshot must make them durable
      // before it freezes the layer. That flush runs before the pause, with I/O flowing, so the
      // pause flushes only what arrives meanwhile. Both from the daemon's log of each snapshot.
      const unflushedBytes = blocks(512 * MiB * ctx.scale, 4 * MiB);
      const phases: { pause: number; flushed: number }[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        const src = randomSource(srcDir, `unflushed-${seed++}`, unflushedBytes);
        try {
          const disconnect = await writeNbdUnflushed(exp.uri, { offset: 0, length: unflushedBytes }, src);
          try {
            await d.snapshot('served');
          } finally {
            await disconnect();
          }
        } finally {
          rmSync(src.path, { force: true });
        }
        const rec = d.lastLog('point-in-time snapshot available');
        if (typeof rec?.pauseMs !== 'number' || typeof rec.flushMs !== 'number') throw new Error('the daemon logged no pause for the snapshot');
        phases.push({ pause: rec.pauseMs / 1000, flushed: rec.flushMs / 1000 });
      }
      const instant = `${label}: the instant after ${(unflushedBytes / MiB).toFixed(0)} MiB written, not flushed`;
      s.add(instant, 'flushing them before the pause (I/O flowing)', 'limit', await repeat(phases.length, async (i) => ({ seconds: phases[i].flushed })),
        { logicalBytes: unflushedBytes, note: 'what the pause would be if the instant flushed them with I/O held' });
      s.add(instant, 'served disk: I/O held', 'ours', await repeat(phases.length, async (i) => ({ seconds: phases[i].pause })),
        { logicalBytes: unflushedBytes, limit: { tool: 'flushing them before the pause (I/O flowing)' }, note: 'gate closed to reopened: drain, catalog commit, flush of what came meanwhile, new layer' });
    });
    return s.build();
  },
};
