/**
 * The long crash run: `npm run torture -- --rounds 500 [--seed N] [--block-size BYTES] [--phase-rounds N]`.
 * Same rounds as test/crash/crash.test.ts. Without --block-size the run alternates phases of
 * --phase-rounds rounds (default 25) between a 64 KiB and the default 4 MiB block size, each on a
 * fresh store that must end empty (the 4 MiB phases exercise the granule files). Prints one line
 * per round, the totals as JSON, and exits 1 on the first broken invariant (the message names
 * the seed and block size to replay).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { positiveIntFlag as flag } from '../helpers/long-run-args';
import { seedFrom } from '../helpers/random';
import { removeTortureDir, runTorture, type OpKind, type TortureStats } from './rounds';

const BLOCK_SIZES = [64 * 1024, 4 * 1024 * 1024];

async function main(): Promise<void> {
  const rounds = flag('rounds', 500);
  const seed = flag('seed', seedFrom('BLOCKSNAP_TORTURE_SEED'));
  const fixed = process.argv.includes('--block-size') ? flag('block-size', 64 * 1024) : null;
  const phaseRounds = flag('phase-rounds', 25);
  const started = Date.now();
  const phases: TortureStats[] = [];
  for (let done = 0, phase = 0; done < rounds; phase++) {
    const blockSize = fixed ?? BLOCK_SIZES[phase % BLOCK_SIZES.length]!;
    const n = Math.min(fixed === null ? phaseRounds : rounds, rounds - done);
    const dir = mkdtempSync(join(tmpdir(), 'bsc-'));
    process.stdout.write(`torture: ${n} rounds, seed ${seed + phase}, block size ${blockSize}, in ${dir}\n`);
    try {
      phases.push(await runTorture({ rounds: n, dir, seed: seed + phase, blockSize, log: (l) => process.stdout.write(`${l}\n`) }));
      removeTortureDir(dir);
    } catch (err) {
      process.stderr.write(`torture failed: ${(err as Error).message}\n(data kept in ${dir})\n`);
      process.exit(1);
    }
    done += n;
  }
  process.stdout.write(`${JSON.stringify({ ...totals(phases), seconds: Math.round((Date.now() - started) / 1000) })}\n`);
}

/** Sums the phases' counters (per kind of operation too); keeps the seeds and block sizes apart. */
function totals(phases: TortureStats[]): Record<string, unknown> {
  const sum: Record<string, unknown> = { seeds: phases.map((p) => p.seed), blockSizes: phases.map((p) => p.blockSize) };
  for (const p of phases) {
    for (const [k, v] of Object.entries(p)) {
      if (k === 'seed' || k === 'blockSize') continue;
      if (typeof v === 'number') sum[k] = k === 'granuleFilesMax' ? Math.max(Number(sum[k] ?? 0), v) : Number(sum[k] ?? 0) + v;
      else {
        const into = (sum[k] ?? {}) as Partial<Record<OpKind, number>>;
        for (const [kind, n] of Object.entries(v as Partial<Record<OpKind, number>>)) into[kind as OpKind] = (into[kind as OpKind] ?? 0) + n!;
        sum[k] = into;
      }
    }
  }
  return sum;
}

void main();
