/**
 * 16 clients, 8 disks, mixed operations for 20 s against the real daemon (soak.ts says what is
 * checked); the long run is `npm run soak -- --seconds 600`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { seedFrom } from '../helpers/random';
import { runSoak } from './soak';

const SECONDS = Number(process.env.BLOCKSNAP_SOAK_SECONDS ?? 20);

t.test(`${SECONDS} s of 16 clients on 8 disks: no deadlock, only documented refusals, a clean store`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const seed = seedFrom('BLOCKSNAP_SOAK_SEED');
  t.comment(`seed ${seed}`);
  const stats = await runSoak({ seconds: SECONDS, dir, seed });
  t.comment(JSON.stringify(stats));
  t.ok(stats.snapshotsCreated > 0 && stats.rollbacks > 0 && stats.clones > 0 && stats.deletes > 0, 'every kind of operation ran');
  t.ok(stats.refusals.DiskBusy! > 0, 'clients collided on busy disks and were told so');
  t.ok(stats.rssMaxBytes < 512 * 1024 * 1024, `daemon RSS stayed bounded (max ${stats.rssMaxBytes})`);
});
