import t from 'tap';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine } from '../helpers/engine';
import type { GcResult } from '../../src/engine/types';

// The store's temp directories are the daemon's own: gc empties them, and nothing else.

t.test('gc never enters a temp directory that is a symlink, and puts a real one in its place', async (t) => {
  const f = await openEngine(t);
  const elsewhere = join(f.dataDir, '..', 'elsewhere');
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, 'precious.txt'), 'precious');
  const tmp = join(f.dataDir, 'blocks', 'tmp');
  if (existsSync(tmp)) rmdirSync(tmp);
  symlinkSync(elsewhere, tmp);
  const gc = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(readFileSync(join(elsewhere, 'precious.txt'), 'utf8'), 'precious', 'the target keeps its files');
  t.ok(lstatSync(tmp).isDirectory(), 'blocks/tmp is a real directory again');
  t.equal(gc.removedTempFiles, 1, 'the symlink counts as the one leftover removed');
});

t.test('gc removes a directory left in a temp directory, with its content', async (t) => {
  const f = await openEngine(t);
  const junk = join(f.dataDir, 'blocks', 'tmp', 'junkdir');
  mkdirSync(junk, { recursive: true });
  writeFileSync(join(junk, 'x'), 'x');
  const gc = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.notOk(existsSync(junk));
  t.equal(gc.removedTempFiles, 1);
});
