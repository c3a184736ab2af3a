/**
 * A few thousand hostile frames against the real daemon (protocol-fuzz.ts says what is sent and
 * checked); the long run is `npm run fuzz:protocol -- --frames 100000`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { seedFrom } from '../helpers/random';
import { runProtocolFuzz } from './protocol-fuzz';

const FRAMES = Number(process.env.BLOCKSNAP_FUZZ_FRAMES ?? 5000);

t.test(`${FRAMES} hostile frames: the daemon survives and keeps serving`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const seed = seedFrom('BLOCKSNAP_FUZZ_SEED');
  t.comment(`seed ${seed}`);
  const stats = await runProtocolFuzz({ frames: FRAMES, dir, seed });
  t.comment(JSON.stringify(stats));
  t.ok(stats.frames >= FRAMES, 'every frame was sent');
  t.ok(stats.closedByDaemon > 0, 'the daemon closed connections it could not trust');
  t.ok(stats.codes.ProtocolError! > 0 && stats.codes.InvalidArgument! > 0, 'and answered bad frames and bad params with their codes');
  t.ok(stats.bystanderCalls > 0, 'well-behaved clients were served throughout');
  t.ok(stats.rssMaxBytes < 512 * 1024 * 1024, `daemon RSS stayed bounded (max ${stats.rssMaxBytes})`);
});
