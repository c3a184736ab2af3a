/**
 * SIGKILL the real daemon at random moments (mid-job, just after a job was accepted, and during
 * start-up recovery) of a mixed workload and check every crash invariant after each restart;
 * rounds.ts says which. CI runs 30 rounds at a 64 KiB block size, the long run is `npm run
 * torture -- --rounds 500`, which alternates 64 KiB and 4 MiB stores. A failure names its seed:
 * BLOCKSNAP_TORTURE_SEED replays it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { seedFrom } from '../helpers/random';
import { removeTortureDir, runTorture } from './rounds';

const ROUNDS = Number(process.env.BLOCKSNAP_CRASH_ROUNDS ?? 30);

t.test(`${ROUNDS} rounds of SIGKILL at random moments lose nothing`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsc-'));
  t.teardown(() => removeTortureDir(dir));
  const seed = seedFrom('BLOCKSNAP_TORTURE_SEED');
  t.comment(`seed ${seed}`);
  const stats = await runTorture({ rounds: ROUNDS, dir, seed });
  t.comment(JSON.stringify(stats));
  t.equal(stats.rounds, ROUNDS, 'every round survived its kill');
  t.equal(stats.lost, 0, 'nothing was lost');
  t.ok(stats.kills >= ROUNDS, 'the daemon was killed at least once per round');
  t.ok(stats.killsMidJob > 0, 'some kills landed while jobs were running');
  t.ok(stats.snapshotsAvailable > 0, 'snapshots completed between the kills');
  t.ok(stats.clonesChecked > 0, 'surviving snapshots were cloned and compared');
});
