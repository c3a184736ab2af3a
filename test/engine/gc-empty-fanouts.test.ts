import t from 'tap';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { engineWithSnapshot, finished } from '../helpers/engine';
import type { GcResult } from '../../src/engine/types';

// A snapshot that fails (out of space or inodes) frees its blocks but leaves the fan-out
// directories it made; each holds an inode, which gc gives back.

const BS = 64 * 1024;

function fanouts(dataDir: string): string[] {
  return readdirSync(join(dataDir, 'blocks')).filter((n) => n !== 'tmp').sort();
}

t.test('gc removes the empty fan-out directories, counts them, and keeps the ones holding blocks', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 1, filled: 1, disk: 'd', snapshot: 's' });
  const [kept] = fanouts(f.dataDir);
  const empty = ['000', '7ff', 'fff'].filter((n) => n !== kept).slice(0, 2);
  for (const n of empty) mkdirSync(join(f.dataDir, 'blocks', n));
  const gc = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(gc.removedEmptyDirs, 2);
  t.same(fanouts(f.dataDir), [kept]);
  t.equal(gc.keptBlocks, 1);
});

t.test('gc leaves an empty directory that is no fan-out name alone: a stray is the operator\'s', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 1, filled: 1, disk: 'd', snapshot: 's' });
  mkdirSync(join(f.dataDir, 'blocks', 'zzz'));
  const gc = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(gc.removedEmptyDirs, 0);
  t.ok(existsSync(join(f.dataDir, 'blocks', 'zzz')));
});

t.test('once the last snapshot is deleted, gc leaves no fan-out directory behind', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 3, filled: 3, disk: 'd', snapshot: 's' });
  const before = fanouts(f.dataDir).length;
  await f.engine.deleteSnapshot('s');
  const gc = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(gc.removedEmptyDirs, before);
  t.same(fanouts(f.dataDir), []);
});
