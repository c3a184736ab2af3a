/**
 * The long soak: `npm run soak -- --seconds 600 [--seed N]`. Prints progress and the totals as
 * JSON; exits 1 on the first failure (the message names the seed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { positiveIntFlag as flag } from '../helpers/long-run-args';
import { seedFrom } from '../helpers/random';
import { runSoak } from './soak';

async function main(): Promise<void> {
  const seconds = flag('seconds', 600);
  const seed = flag('seed', seedFrom('BLOCKSNAP_SOAK_SEED'));
  const dir = mkdtempSync(join(tmpdir(), 'bsk-'));
  process.stdout.write(`soak: ${seconds} s, seed ${seed}\n`);
  try {
    const stats = await runSoak({ seconds, dir, seed, log: (l) => process.stdout.write(`${l}\n`) });
    process.stdout.write(`${JSON.stringify(stats)}\n`);
    rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    process.stderr.write(`soak failed: ${(err as Error).message}\n(data kept in ${dir})\n`);
    process.exit(1);
  }
}

void main();
