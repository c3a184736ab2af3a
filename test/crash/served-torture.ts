/**
 * The long crash run of a served copy-on-write disk: `npm run torture:served -- --rounds 200
 * [--seed N]`. Same rounds as test/crash/served-crash.test.ts; prints one line per round and the
 * totals as JSON, and exits 1 on the first broken invariant (the message names the seed to replay).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { positiveIntFlag as flag } from '../helpers/long-run-args';
import { seedFrom } from '../helpers/random';
import { removeTortureDir } from './rounds';
import { runServedTorture } from './served-rounds';

async function main(): Promise<void> {
  const rounds = flag('rounds', 200);
  const seed = flag('seed', seedFrom('BLOCKSNAP_TORTURE_SEED'));
  const dir = mkdtempSync(join(tmpdir(), 'bss-'));
  const started = Date.now();
  process.stdout.write(`served torture: ${rounds} rounds, seed ${seed}, in ${dir}\n`);
  try {
    const stats = await runServedTorture({ rounds, dir, seed, log: (l) => process.stdout.write(`${l}\n`) });
    process.stdout.write(`${JSON.stringify({ ...stats, seconds: Math.round((Date.now() - started) / 1000) })}\n`);
    removeTortureDir(dir);
  } catch (err) {
    process.stderr.write(`served torture failed: ${(err as Error).message}\n(data kept in ${dir})\n`);
    process.exit(1);
  }
}

void main();
