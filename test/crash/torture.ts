/**
 * The long crash run: `npm run torture -- --rounds 500 [--seed N] [--block-size BYTES]`.
 * Same rounds as test/crash/crash.test.ts; prints one line per round and the totals as JSON, and
 * exits 1 on the first broken invariant (the message names the seed to replay).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { positiveIntFlag as flag } from '../helpers/long-run-args';
import { seedFrom } from '../helpers/random';
import { removeTortureDir, runTorture } from './rounds';

async function main(): Promise<void> {
  const rounds = flag('rounds', 500);
  const seed = flag('seed', seedFrom('BLOCKSNAP_TORTURE_SEED'));
  const blockSize = flag('block-size', 64 * 1024);
  const dir = mkdtempSync(join(tmpdir(), 'bsc-'));
  const started = Date.now();
  process.stdout.write(`torture: ${rounds} rounds, seed ${seed}, block size ${blockSize}, in ${dir}\n`);
  try {
    const stats = await runTorture({ rounds, dir, seed, blockSize, log: (l) => process.stdout.write(`${l}\n`) });
    process.stdout.write(`${JSON.stringify({ ...stats, seconds: Math.round((Date.now() - started) / 1000) })}\n`);
    removeTortureDir(dir);
  } catch (err) {
    process.stderr.write(`torture failed: ${(err as Error).message}\n(data kept in ${dir})\n`);
    process.exit(1);
  }
}

void main();
