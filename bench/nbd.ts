/**
 * Question: how fast does the NBD server serve a snapshot, against qemu-nbd serving the same
 * content from a raw file? Sequential read (`nbdcopy EXPORT null:`, multi-connection and
 * parallel requests as nbdcopy chooses) and random 4 KiB reads, warm and cold cache (`qemu-img
 * bench` at queue depth 16, one read every 4 MiB + 4 KiB, wrapping: every read lands in another
 * store block, the worst case of a 4 MiB verification granularity); writes through a writable
 * copy-on-write clone against qemu-nbd serving a qcow2 overlay of the raw file: strided 4 KiB
 * writes (each in a qcow2 cluster of its own: a copy-up for qemu-nbd, a whole 4 KiB granule for
 * blocksnap), strided 512-byte writes (a copy-up on both sides) and sequential 4 KiB writes.
 * Target: ≥ 0.8× qemu-nbd. The sequential read is reported twice: the first read of a fresh
 * export (every block verified on first touch) and later passes over an export already read.
 * The 512-byte writes are reported twice too: fresh clones with the page cache dropped, as the
 * first clone after the snapshot meets it, and fresh clones with the base cached. Both check the
 * base bytes they copy up against the granule files the snapshot's scan wrote (64 KiB at a time);
 * the cache-dropped row is there so that a regression of that (every first touch verifying a
 * whole 4 MiB block) cannot hide in a median.
 * For random reads and writes the two
 * servers' runs alternate (bench/lib/measure.ts `alternate`), and each write run's server is
 * stopped once timed: a clone left exported verifies base blocks on its idle thread, which ran
 * into later runs and made copy-ups look half as fast as qemu-nbd's.
 *
 * Standalone (`ts-node --transpile-only bench/nbd.ts [--scale F] [--runs N]`) because it needs a
 * daemon with `--nbd-socket`; it also exports a Question for bench/run.ts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonClient } from '../src/daemon/client';
import type { Job } from '../src/engine/types';
import { BIN, ensureBuilt } from '../test/integration/fixtures/harness';
import type { BenchContext, Question } from './lib/context';
import { MiB, writeImage } from './lib/images';
import { alternate, repeat, since, type Measured } from './lib/measure';
import { canDropCaches, dropCaches } from './lib/system';
import { markdown, SectionBuilder, type Row, type Section } from './lib/report';

const STRIDE = 4 * MiB + 4096;
/**
 * Strided writes step 64 KiB further per block: qemu-img bench wraps at the end of the export,
 * and with this step every write of 16 passes lands in a qcow2 cluster (and a blocksnap granule)
 * of its own, so each is a first write there (checked with `qemu-img map` of the overlay).
 */
const COPY_UP_STRIDE = 4 * MiB + 64 * 1024;
const COPY_UP_PASSES = 16;

async function waitFor(path: string, proc: ChildProcess): Promise<void> {
  const until = Date.now() + 30_000;
  while (!existsSync(path)) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`${path} never appeared`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return since(t0);
}

/**
 * `workDir`: where the image, the store and the overlays go (the question's scratch directory,
 * on the disk the other questions use), unless its path is too long for the sockets below it.
 * `keep` leaves them there.
 */
export async function runNbd(scale: number, runs: number, log: (s: string) => void, workDir = tmpdir(), keep = false): Promise<Section> {
  const s = new SectionBuilder('nbd', 'NBD: a snapshot served by blocksnap against the same content served by qemu-nbd');
  ensureBuilt();
  // Room for the longest socket name (a daemon's control socket, 108 bytes at most) below it.
  const base = workDir.length <= 64 ? workDir : tmpdir();
  if (base !== workDir) log(`nbd: ${workDir} is too long a path for the sockets: working under ${base}`);
  const dir = mkdtempSync(join(base, 'bsnbd-'));
  const procs: ChildProcess[] = [];
  try {
    const size = Math.max(64 * MiB, Math.round((1024 * MiB * scale) / MiB) * MiB);
    const img = join(dir, 'vm.img');
    writeImage(img, size, [{ offset: 0, length: size, kind: 'random' }], 'nbd');
    const sock = join(dir, 'd.sock');
    const nbdSock = join(dir, 'n.sock');
    const daemon = spawn(process.execPath, [BIN, 'daemon', '--data-dir', join(dir, 'data'), '--socket', sock, '--nbd-socket', nbdSock,
      '--image-root', dir, '--log-level', 'warn'], { stdio: 'ignore' });
    procs.push(daemon);
    // The control socket is the daemon's last to open (the NBD socket listens before it).
    await waitFor(sock, daemon);
    const client = await DaemonClient.connect({ socketPath: sock, clientName: 'bench' });
    const disk = await client.call<{ id: string }>('disk.add', { path: img, name: 'vm' });
    const job = await client.call<Job>('snapshot.create', { disk: disk.id, name: 'base', wait: true });
    if (job.state !== 'succeeded') throw new Error(`snapshot ${job.state}`);
    const exp = await client.call<{ uri: string }>('export.start', { snapshot: 'base', name: 'vm' });
    client.close();
    const call = async <T>(method: string, params: Record<string, unknown>): Promise<T> => {
      const c = await DaemonClient.connect({ socketPath: sock, clientName: 'bench' });
      try {
        return await c.call<T>(method, params);
      } finally {
        c.close();
      }
    };
    const qsock = join(dir, 'q.sock');
    const qemu = spawn('qemu-nbd', ['-r', '-f', 'raw', '-x', 'vm', '-k', qsock, '--persistent', '--shared', '8', img], { stdio: 'ignore' });
    procs.push(qemu);
    await waitFor(qsock, qemu);
    const peer = `nbd+unix:///vm?socket=${qsock}`;
    log(`nbd: ${size / MiB} MiB served by both`);

    const seq = 'sequential read, warm cache';
    s.add(seq, 'qemu-nbd (raw file)', 'limit', await repeat(runs, async () => ({ seconds: timed('nbdcopy', [peer, 'null:']) })), { logicalBytes: size });
    // A volume verifies each block once per open: every run gets an export of its own, which is
    // what a client reading a freshly started export meets.
    let fresh = 0;
    const firstPass = s.add(seq, 'blocksnap export, first read of a fresh export', 'ours', await repeat(runs, async () => {
      const name = `fresh${fresh++}`;
      const { uri } = await call<{ uri: string }>('export.start', { snapshot: 'base', name });
      try {
        return { seconds: timed('nbdcopy', [uri, 'null:']) };
      } finally {
        await call('export.stop', { name });
      }
    }), { logicalBytes: size, limit: { tool: 'qemu-nbd (raw file)' }, note: 'a new export each run: each granule checked against its block\'s granule file on first touch' });
    // The passes below read the long-lived export, whose blocks the first of them verified.
    timed('nbdcopy', [exp.uri, 'null:']);
    const ours = s.add(seq, 'blocksnap export, later passes', 'ours', await repeat(runs, async () => ({ seconds: timed('nbdcopy', [exp.uri, 'null:']) })),
      { logicalBytes: size, limit: { tool: 'qemu-nbd (raw file)' }, note: 'an export whose blocks an earlier pass verified: read in place' });
    // Random 4 KiB reads: qemu-img bench steps by STRIDE and wraps at the end of the export, so
    // every read lands in another store block and the passes cover different offsets of each.
    const reads = Math.max(1024, Math.round(32768 * Math.min(1, scale * 4)));
    const randomRead = (uri: string): number => timed('qemu-img', ['bench', '-f', 'raw', '-c', String(reads), '-s', '4k', '-S', String(STRIDE), '-d', '16', uri]);
    const vsQemu = (c: string, row: Row): void => {
      const r = row.ratio === null ? null : 1 / row.ratio;
      s.target(`${c} vs qemu-nbd`, '≥ 0.8×', r === null ? '–' : `${r.toFixed(2)}×`, r === null ? null : r >= 0.8, s.samplesOf(row));
    };
    const caches: Array<'warm' | 'cold'> = canDropCaches() ? ['warm', 'cold'] : ['warm'];
    for (const cache of caches) {
      const c = `${reads} random 4 KiB reads, ${cache} cache (each in another store block)`;
      const prepare = cache === 'cold' ? dropCaches : (): void => {};
      const [theirs, mine] = await alternate(runs, async () => { prepare(); return { seconds: randomRead(peer) }; },
        async () => { prepare(); return { seconds: randomRead(exp.uri) }; });
      s.add(c, 'qemu-nbd (raw file)', 'limit', theirs!, { logicalBytes: reads * 4096 });
      const row = s.add(c, 'blocksnap export', 'ours', mine!, {
        logicalBytes: reads * 4096, limit: { tool: 'qemu-nbd (raw file)' }, paired: true,
        note: cache === 'warm' ? 'blocks verified by the sequential runs: served from the page cache on the daemon\'s JS thread' : 'verified blocks, pages dropped: each read a pool thread\'s pread',
      });
      vsQemu(c, row);
    }
    vsQemu('sequential read, first read of a fresh export', firstPass);
    vsQemu('sequential read, later passes on the same export', ours);

    // Writes: a copy-on-write clone of the snapshot, served writable, against qemu-nbd serving a
    // qcow2 overlay backed by the raw file (both copy up what a write does not cover: 64 KiB
    // granules here, 64 KiB clusters there). Each run gets a fresh clone / overlay, so every run
    // pays the copy-ups.
    const copyUps = Math.max(1, Math.floor(size / COPY_UP_STRIDE)) * COPY_UP_PASSES;
    const strided = (bytes: string) => (uri: string): number =>
      timed('qemu-img', ['bench', '-w', '-f', 'raw', '-c', String(copyUps), '-s', bytes, '-S', String(COPY_UP_STRIDE), '-d', '16', uri]);
    // 4 KiB writes fill blocksnap's 4 KiB granules whole: only qemu-nbd copies up (the rest of
    // its 64 KiB cluster). 512-byte writes, as a guest with 512-byte sectors may send, copy up on
    // both sides: blocksnap reads the rest of the 4 KiB granule from the base, checked.
    const writes = `${copyUps} strided 4 KiB writes (each in a 64 KiB qcow2 cluster of its own)`;
    const sectorWrites = `${copyUps} strided 512-byte writes (each a copy-up on both sides)`;
    const seqWrite = `sequential 4 KiB writes over ${Math.min(size, 256 * MiB) / MiB} MiB`;
    const seqCount = Math.min(size, 256 * MiB) / 4096;
    const seqWriteBench = (uri: string): number => timed('qemu-img', ['bench', '-w', '-f', 'raw', '-c', String(seqCount), '-s', '4k', '-d', '16', uri]);
    let run = 0;
    // Each run's server is stopped once its run is timed: a clone left exported would verify, on
    // its idle thread, the base blocks its writes landed in, during the next run of either tool.
    const overlay = async (): Promise<{ uri: string; stop: () => Promise<void> }> => {
      const ov = join(dir, `ov${run}.qcow2`);
      const qs = join(dir, `w${run}.sock`);
      run++;
      const c = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img, '-F', 'raw', ov], { encoding: 'utf8' });
      if (c.status !== 0) throw new Error(`qemu-img create: ${c.stderr}`);
      const q = spawn('qemu-nbd', ['-f', 'qcow2', '-x', 'vm', '-k', qs, '--persistent', '--shared', '8', '--cache', 'writeback', ov], { stdio: 'ignore' });
      procs.push(q);
      await waitFor(qs, q);
      return {
        uri: `nbd+unix:///vm?socket=${qs}`,
        stop: async () => {
          q.kill('SIGTERM');
          if (q.exitCode === null) await new Promise((r) => q.once('exit', r));
          rmSync(ov, { force: true });
        },
      };
    };
    const cowClone = async (): Promise<{ uri: string; stop: () => Promise<void> }> => {
      const name = `cow${run++}`;
      await call('clone.cow', { snapshot: 'base', name });
      const { uri } = await call<{ uri: string }>('export.start', { disk: name, writable: true, name });
      return { uri, stop: () => call('export.stop', { name }) };
    };
    const timedOn = async (server: Promise<{ uri: string; stop: () => Promise<void> }>, fn: (uri: string) => number): Promise<{ seconds: number }> => {
      const { uri, stop } = await server;
      try {
        return { seconds: fn(uri) };
      } finally {
        await stop();
      }
    };
    const notes: Record<string, string> = {
      [writes]: 'a fresh clone each run, runs alternating with qemu-nbd\'s: each write fills a 4 KiB granule whole and reads nothing below it',
      [sectorWrites]: 'a fresh clone each run, base cached, runs alternating with qemu-nbd\'s: each copy-up reads the rest of its 4 KiB granule and checks the 64 KiB base granule under it',
      [seqWrite]: 'runs alternating with qemu-nbd\'s',
    };
    const cases: Array<[string, (uri: string) => number, number, number]> = [
      [writes, strided('4k'), copyUps, 4096], [sectorWrites, strided('512'), copyUps, 512], [seqWrite, seqWriteBench, seqCount, 4096],
    ];
    for (const [c, fn, n, bytes] of cases) {
      const limit = { tool: 'qemu-nbd (qcow2 overlay)' };
      let first: Measured | null = null;
      let theirFirst: Measured | null = null;
      const firstLimit = { tool: 'qemu-nbd (qcow2 overlay), cache dropped' };
      if (c === sectorWrites) {
        // A clone whose copy-ups meet nothing cached, as the first clone after the snapshot's
        // scan does (the scan leaves no page of the base's granules or granule files cached):
        // the page cache is dropped before each run (where root), and the volume verifies each
        // base granule once per open, so every run's fresh clone verifies again. Compared with
        // qemu-nbd's overlay in the same state, runs alternating.
        const cold = canDropCaches() ? dropCaches : (): void => {};
        [theirFirst, first] = (await alternate(runs, () => { cold(); return timedOn(overlay(), fn); },
          () => { cold(); return timedOn(cowClone(), fn); })) as [Measured, Measured];
      }
      const [theirs, ours] = await alternate(runs, () => timedOn(overlay(), fn), () => timedOn(cowClone(), fn));
      s.add(c, limit.tool, 'limit', theirs!, { logicalBytes: n * bytes });
      if (first && theirFirst) {
        s.add(c, firstLimit.tool, 'limit', theirFirst, { logicalBytes: n * bytes });
        const row = s.add(c, 'blocksnap copy-on-write export, cache dropped', 'ours', first, {
          logicalBytes: n * bytes, limit: firstLimit, paired: true,
          note: 'a fresh clone each run, cache dropped: each copy-up reads a 64 KiB base granule from the disk and checks it against the granule file the snapshot wrote',
        });
        vsQemu(`${c}, cache dropped`, row);
      }
      const w = s.add(c, 'blocksnap copy-on-write export', 'ours', ours!, { logicalBytes: n * bytes, limit, paired: true, note: notes[c] });
      vsQemu(c, w);
    }
    return s.build();
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

export const nbd: Question = {
  name: 'nbd',
  run: (ctx: BenchContext) => runNbd(ctx.scale, ctx.runs, ctx.log, ctx.scratch, ctx.args.keep),
};

if (require.main === module) {
  const arg = (k: string, d: number): number => {
    const i = process.argv.indexOf(k);
    return i > 0 ? Number(process.argv[i + 1]) : d;
  };
  runNbd(arg('--scale', 1), arg('--runs', 3), (m) => process.stderr.write(`bench: ${m}\n`))
    .then((section) => process.stdout.write(markdown(section)))
    .catch((err: unknown) => { process.stderr.write(`${(err as Error).stack ?? err}\n`); process.exitCode = 1; });
}
