/**
 * The automatic quota deletes in a transaction of its own, after the new snapshot's commit. A
 * process killed between the two must lose nothing, and must not leave the disk over its quota
 * for good: the next automatic snapshot's commit deletes the excess the kill left with its own.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { finished } from '../helpers/engine';
import { openSmallEngine, smallDisk } from '../helpers/model';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');

t.test('killed between an automatic snapshot\'s commit and its evictions: nothing lost, the next one restores the quota', async (t) => {
  const dir = t.testdir();
  let f = await openSmallEngine(t, { snapshotQuota: { auto: 2 }, dir });
  await smallDisk(f, 'y', 2);
  const auto = async (name: string): Promise<string> => (await finished(f.engine, f.engine.startSnapshot('y', { type: 'auto', name }))).snapshotId!;
  const a1 = await auto('auto-1');
  const a2 = await auto('auto-2');
  await f.engine.close();

  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'quota-kill-after-commit-child.ts'))})`;
  const child = spawnSync(process.execPath, ['-e', main, f.dataDir, f.images, 'y', '2'], {
    cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 120_000,
  });
  t.equal(child.signal, 'SIGKILL', `the child was killed after the snapshot's commit: ${child.stderr}`);

  f = await openSmallEngine(t, { snapshotQuota: { auto: 2 }, dir });
  const after = f.engine.listSnapshots('y');
  t.same(after.map((s) => [s.name, s.status]), [['auto-1', 'available'], ['auto-2', 'available'], ['auto-killed-after-commit', 'available']],
    'every snapshot is there and available: one over the quota of two');

  const a4 = await auto('auto-4');
  const killed = after[2]!.id;
  t.same(f.engine.listSnapshots('y').map((s) => s.id), [killed, a4], 'the next automatic snapshot brought the disk back to its quota');
  t.notOk([a1, a2].some((id) => f.engine.listSnapshots('y').some((s) => s.id === id)), 'by deleting the two oldest');
});
