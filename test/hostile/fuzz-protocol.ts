/**
 * The long protocol fuzz: `npm run fuzz:protocol -- --frames 100000 [--seed N]`. Prints progress
 * and the totals as JSON; exits 1 on the first failure (the message names the seed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { positiveIntFlag as flag } from '../helpers/long-run-args';
import { seedFrom } from '../helpers/random';
import { runProtocolFuzz } from './protocol-fuzz';

async function main(): Promise<void> {
  const frames = flag('frames', 100_000);
  const seed = flag('seed', seedFrom('BLOCKSNAP_FUZZ_SEED'));
  const dir = mkdtempSync(join(tmpdir(), 'bsz-'));
  const started = Date.now();
  process.stdout.write(`fuzz: ${frames} frames, seed ${seed}\n`);
  try {
    const stats = await runProtocolFuzz({ frames, dir, seed, log: (l) => process.stdout.write(`${l}\n`) });
    process.stdout.write(`${JSON.stringify({ ...stats, seconds: Math.round((Date.now() - started) / 1000) })}\n`);
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    process.stderr.write(`fuzz failed: ${(err as Error).message}\n(data kept in ${dir})\n`);
    process.exit(1);
  }
}

void main();
