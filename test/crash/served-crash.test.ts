/**
 * SIGKILL the real daemon while clients write to a served copy-on-write disk, while it takes a
 * snapshot of it or rolls it back, and check after each restart that nothing flushed, written
 * with FUA or frozen by a snapshot was lost; served-rounds.ts says exactly what is checked. CI runs
 * 12 rounds, the long run is `npm run torture:served -- --rounds 200`. A failure names its seed:
 * BLOCKSNAP_TORTURE_SEED replays it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { seedFrom } from '../helpers/random';
import { removeTortureDir } from './rounds';
import { runServedTorture } from './served-rounds';

const ROUNDS = Number(process.env.BLOCKSNAP_SERVED_CRASH_ROUNDS ?? 12);

t.test(`${ROUNDS} rounds of SIGKILL under NBD writes, snapshots and rollbacks lose nothing`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bss-'));
  t.teardown(() => removeTortureDir(dir));
  const seed = seedFrom('BLOCKSNAP_TORTURE_SEED');
  t.comment(`seed ${seed}`);
  const stats = await runServedTorture({ rounds: ROUNDS, dir, seed });
  t.comment(JSON.stringify(stats));
  t.equal(stats.rounds, ROUNDS, 'every round survived its kill');
  t.equal(stats.lost, 0, 'nothing durable was lost');
  t.ok(stats.killsMidWrite > 0, 'kills landed with NBD writes in flight');
  t.ok(stats.writesAcked > 0 && stats.writesAcked < stats.writesSent, 'writes were acknowledged, and some were cut off by a kill');
  t.ok(stats.snapshotsChecked > 0, 'surviving snapshots were cloned and compared');
});
