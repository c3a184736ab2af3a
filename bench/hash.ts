/**
 * Question 6: hash throughput of the native scanner alone (in process, no daemon, no store
 * writes) on a warm all-data image, 1 and 2 threads, against `openssl speed -evp sha256` on
 * 4 MiB buffers with as many processes: the SHA-256 ceiling of this CPU. The two are run in
 * turn (bench/lib/measure.ts `alternate`).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { scanImage } from '../src/native';
import type { BenchContext, Question } from './lib/context';
import { BLOCK, MiB, blocks, writeImage } from './lib/images';
import { alternate, repeat, since, type Sample } from './lib/measure';
import { SectionBuilder } from './lib/report';
import { ratioText } from './lib/questions';
import { FLOOR_TOOL, cachedHashFloor, has, opensslSha256, warm } from './lib/system';

export const hash: Question = {
  name: 'hash',
  async run(ctx: BenchContext) {
    const root = join(ctx.scratch, 'images');
    mkdirSync(root, { recursive: true });
    const size = blocks(1024 * MiB * ctx.scale, 64 * MiB);
    const img = join(root, 'hash.img');
    if (!existsSync(img)) writeImage(img, size, [{ offset: 0, length: size, kind: 'random' }], 'hash.img');
    const s = new SectionBuilder('hash', `Hash throughput: native scanner on a warm ${size / MiB} MiB all-data image vs OpenSSL`);
    const seconds = ctx.scale >= 0.5 ? 3 : 1;

    for (const threads of [1, 2]) {
      const c = `${threads} thread${threads > 1 ? 's' : ''}`;
      const tool = `openssl speed -evp sha256${threads > 1 ? ` -multi ${threads}` : ''}`;
      const scan = async (): Promise<Sample> => {
        warm(img);
        const t0 = process.hrtime.bigint();
        const r = await scanImage({ imagePath: img, storeDir: root, blockSize: BLOCK, writeBlocks: false, threads });
        return { seconds: since(t0), extra: { bytesRead: r.bytesRead } };
      };
      if (!has('openssl')) {
        s.missing(c, 'openssl speed', 'not installed');
        s.add(c, 'blocksnap native scan, hash only (engine API)', 'ours', await repeat(ctx.runs, scan), { logicalBytes: size });
        continue;
      }
      // The ceiling, the floor and the scan taken in turn, so that a drift of the machine's speed
      // over the question lands on all three; openssl reports a rate, which as a time is the time
      // to hash the same bytes at that rate.
      const floorRun = async (): Promise<Sample> => {
        warm(img);
        return { seconds: cachedHashFloor(img, threads) ?? Number.NaN };
      };
      const [ceiling, floor, m] = await alternate(ctx.runs,
        async () => ({ seconds: size / opensslSha256(threads, seconds)!, logicalBytes: size }), floorRun, scan);
      s.add(c, tool, 'limit', ceiling!, { logicalBytes: size });
      const floorKnown = Number.isFinite(floor!.seconds);
      if (floorKnown) s.add(c, FLOOR_TOOL, 'limit', floor!, { logicalBytes: size, limit: { tool } });
      else s.missing(c, FLOOR_TOOL, 'python3 not installed');
      const row = s.add(c, 'blocksnap native scan, hash only (engine API)', 'ours', m!, {
        logicalBytes: size, limit: { tool }, paired: true,
        note: floorKnown ? `${((floor!.seconds / m!.seconds) * 100).toFixed(0)}% of the floor's rate` : '',
      });
      const frac = row.ratio ? 1 / row.ratio : null;
      s.target(`scan hashing, ${c}`, '≥ 85% of the OpenSSL ceiling', frac === null ? 'n/a' : `${(frac * 100).toFixed(0)}% (${ratioText(row.ratio)} its time)`, frac === null ? null : frac >= 0.85, s.samplesOf(row));
    }
    s.note('The scan hashes each cached block where it lies (a read-only mapping) or reads it into its buffer, whichever it timed faster here, and checks it for zeros; the ceiling hashes one 4 MiB buffer over and over. Their runs alternate.');
    s.note(`The floor (${FLOOR_TOOL}) does only what any scan of a cached file must: one copy out of the page cache and the hash, with as many threads. Its ratio to the ceiling is what this machine allows; the target (85% of the ceiling) can be met only where that copy costs less than a sixth of hashing.`);
    return s.build();
  },
};
