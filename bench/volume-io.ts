/**
 * `ts-node --transpile-only bench/volume-io.ts [--size-mib N] [--ops N] [--depth N] [--work DIR]`:
 * I/O through a copy-on-write Volume from JS (src/native/volume.ts) on a base snapshot of random
 * data: 1 MiB sequential reads (first pass verifies every base block, second reads in place),
 * 4 KiB random reads, 4 KiB random writes (each fills a 4 KiB granule whole, so a first touch
 * copies nothing up; then overwrites of the same offsets), and the flush after them. Not yet part of `npm run bench`.
 */
import { mkdirSync, mkdtempSync, openSync, closeSync, writeSync, ftruncateSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { scanImage } from '../src/native/index';
import { Volume, createLayer } from '../src/native/volume';

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;

function arg(name: string, fallback: number | string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : String(fallback);
}

/** Runs `ops` operations `depth` at a time; returns operations per second. */
async function rate(ops: number, depth: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: depth }, async () => {
    while (next < ops) await op(next++);
  }));
  return ops / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function main(): Promise<void> {
  const size = Number(arg('size-mib', 1024)) * MiB;
  const ops = Number(arg('ops', 20000));
  const depth = Number(arg('depth', 16));
  const work = mkdtempSync(join(arg('work', tmpdir()), 'blocksnap-volume-bench-'));
  try {
    const store = join(work, 'blocks');
    mkdirSync(store);
    const img = join(work, 'base.img');
    const fd = openSync(img, 'w', 0o600);
    ftruncateSync(fd, size);
    for (let off = 0; off < size; off += 16 * MiB) writeSync(fd, randomBytes(Math.min(16 * MiB, size - off)), 0, undefined, off);
    closeSync(fd);
    const scan = await scanImage({ imagePath: img, storeDir: store, blockSize: BLOCK });
    rmSync(img);

    const layer = { dataPath: join(work, 'top.data'), mapPath: join(work, 'top.map') };
    await createLayer(layer, size, 'top');
    const v = await Volume.open({ storeDir: store, blockSize: BLOCK, sizeBytes: size, baseDigests: scan.digests, layers: [layer], writable: true });
    const seqOps = size / MiB;
    const seqVerify = await rate(seqOps, 4, (i) => v.read(i * MiB, MiB));
    const seq = await rate(seqOps, 4, (i) => v.read(i * MiB, MiB));
    const offsets = Array.from({ length: ops }, () => Math.floor(Math.random() * (size / 4096)) * 4096);
    const randRead = await rate(ops, depth, (i) => v.read(offsets[i]!, 4096));
    const data = randomBytes(4096);
    const copyUp = await rate(ops, depth, (i) => v.write(offsets[i]!, data, false));
    const t0 = Date.now();
    await v.flush();
    const flushMs = Date.now() - t0;
    const overwrite = await rate(ops, depth, (i) => v.write(offsets[i]!, data, false));
    const randReadLayer = await rate(ops, depth, (i) => v.read(offsets[i]!, 4096));
    await v.close();

    const rows: Array<[string, string]> = [
      ['volume', `${size / MiB} MiB, block ${BLOCK / MiB} MiB, granule 4 KiB, queue depth ${depth}, ${ops} random ops`],
      ['1 MiB sequential read, first pass (verifies every block)', `${seqVerify.toFixed(0)} MiB/s`],
      ['1 MiB sequential read, verified base', `${seq.toFixed(0)} MiB/s`],
      ['4 KiB random read, base', `${randRead.toFixed(0)} IOPS`],
      ['4 KiB random write, first touch (a whole granule, nothing copied up)', `${copyUp.toFixed(0)} IOPS`],
      ['flush after those writes', `${flushMs} ms`],
      ['4 KiB random write, granule already in the top layer', `${overwrite.toFixed(0)} IOPS`],
      ['4 KiB random read, mostly top layer', `${randReadLayer.toFixed(0)} IOPS`],
    ];
    for (const [k, val] of rows) process.stdout.write(`| ${k} | ${val} |\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
