import t from 'tap';
import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { Engine } from '../../src/engine';
import { finished, openEngine, snapshot, type Fixture } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { blockPath } from '../../src/store/format';
import type { GcResult, VerifyResult } from '../../src/engine/types';

const BS = 64 * 1024;

function blockFiles(dataDir: string): string[] {
  const root = join(dataDir, 'blocks');
  return readdirSync(root).filter((d) => d !== 'tmp').flatMap((d) => readdirSync(join(root, d)).map((f) => join(root, d, f)));
}

function fileOf(dataDir: string, seed: string): string {
  return blockPath(join(dataDir, 'blocks'), createHash('sha256').update(pattern(seed, BS)).digest('hex'));
}

/** A disk of `n` blocks holding `<name>0..`, snapshotted. */
async function snapshotted(f: Fixture, name: string, n: number) {
  const img = makeImage(join(f.images, `${name}.raw`), n * BS);
  for (let i = 0; i < n; i++) fillBlock(img, i, BS, `${name}${i}`);
  const disk = await f.engine.addDisk({ path: img, name });
  return { img, disk, snap: await snapshot(f.engine, disk.id, `${name}-s`) };
}

/** A file under a block's name that nothing references or freed, as a crash mid-snapshot leaves one. */
function orphanFile(dataDir: string, size: number): void {
  const path = blockPath(join(dataDir, 'blocks'), 'f'.repeat(64));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, Buffer.alloc(size));
}

/** Puts a directory holding a file where a block file was: nothing may unlink it. */
function directoryInPlaceOf(file: string): void {
  unlinkSync(file);
  mkdirSync(join(file, 'inner'), { recursive: true });
  writeFileSync(join(file, 'inner', 'f'), 'x');
}

/**
 * A snapshot of `n` blocks deleted with a directory holding a file in place of its block `a<stuck>`,
 * swept: every other block file is gone. Returns the directory's path.
 */
async function freedWithStuckBlock(f: Fixture, n: number, stuck: number): Promise<string> {
  const { snap } = await snapshotted(f, 'a', n);
  const path = fileOf(f.dataDir, `a${stuck}`);
  directoryInPlaceOf(path);
  await f.engine.deleteSnapshot(snap.id);
  await f.engine.idle();
  return path;
}

t.test('a freed block file the sweep cannot unlink stays pending, named in store stats, and the others are unlinked', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const stuck = await freedWithStuckBlock(f, 4, 2);
  t.same(blockFiles(f.dataDir), [stuck], 'every other freed block was unlinked');
  const stats = f.engine.storeStats();
  t.equal(stats.pendingFreeBlocks, 1);
  t.same(stats.unremovable.map((e) => [e.path, e.code]), [[stuck, 'ENOTEMPTY']]);
});

t.test('an immutable freed block file stays pending, its cause naming the flag to clear', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const { snap } = await snapshotted(f, 'a', 2);
  const stuck = fileOf(f.dataDir, 'a1');
  if (spawnSync('chattr', ['+i', stuck]).status !== 0) {
    t.pass('nothing to check', { skip: 'chattr +i is not available here (not root, or the filesystem has no such attribute)' });
    return;
  }
  try {
    await f.engine.deleteSnapshot(snap.id);
    await f.engine.idle();
    t.same(blockFiles(f.dataDir), [stuck]);
    t.match(f.engine.storeStats().unremovable, [{ path: stuck, code: 'EPERM', message: /immutable or append-only file, chattr -i undoes it/ }]);
  } finally {
    spawnSync('chattr', ['-i', stuck]); // before the test dir is removed
  }
});

t.test('the engine opens with a freed block file it cannot unlink on the free list', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await freedWithStuckBlock(f, 2, 0);
  await f.engine.close();
  const again = await Engine.open({ dataDir: f.dataDir, imageRoots: [f.images], blockSize: BS });
  t.teardown(() => again.close());
  await again.idle();
  t.equal(again.storeStats().pendingFreeBlocks, 1);
  t.same(again.storeStats().unremovable.map((e) => e.path), [fileOf(f.dataDir, 'a0')]);
});

t.test('once cleared by hand, gc removes an unremovable freed block, not counted as an orphan, and store stats no longer lists it', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const stuck = await freedWithStuckBlock(f, 2, 1);
  rmSync(join(stuck, 'inner'), { recursive: true });
  const r = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(r.unremovableEntries, 0);
  t.equal(r.removedBlocks, 1);
  t.equal(r.orphanBlocks, 0, 'a delete had freed it');
  t.notOk(existsSync(stuck));
  t.equal(f.engine.storeStats().pendingFreeBlocks, 0);
  t.same(f.engine.storeStats().unremovable, []);
});

t.test('gc reports an entry it cannot remove with its path and reclaims the rest', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const stuck = await freedWithStuckBlock(f, 3, 0);
  const job = await finished(f.engine, f.engine.startGc());
  const r = job.result as GcResult;
  t.equal(r.unremovableEntries, 1);
  t.same(r.unremovable.map((e) => [e.path, e.code]), [[stuck, 'ENOTEMPTY']]);
  t.match(r.unremovable[0]!.message, /a directory with entries in it/);
  t.equal(f.engine.storeStats().pendingFreeBlocks, 1, 'it stays on the free list');
});

/** An empty directory under the name of a block that nothing references or freed. */
function emptyDirectoryUnderABlockName(dataDir: string): string {
  const path = join(dataDir, 'blocks', 'abc', `abc${'d'.repeat(61)}`);
  mkdirSync(path, { recursive: true });
  return path;
}

t.test('gc reports an empty directory under a block\'s name as a stray entry, not as a removed orphan block', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await snapshotted(f, 'a', 1);
  const dir = emptyDirectoryUnderABlockName(f.dataDir);
  const r = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.match(r, { removedBlocks: 0, removedBytes: 0, orphanBlocks: 0, orphanBytes: 0, keptBlocks: 1, unremovableEntries: 0, strayEntries: 1, strayExamples: [dir] });
});

t.test('gc leaves an empty directory under a block\'s name, as it leaves every stray entry', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await snapshotted(f, 'a', 1);
  const dir = emptyDirectoryUnderABlockName(f.dataDir);
  await finished(f.engine, f.engine.startGc());
  t.ok(existsSync(dir));
});

t.test('a snapshot that stores a block replaces a directory under its name', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const path = fileOf(f.dataDir, 'b0');
  mkdirSync(path, { recursive: true });
  await snapshotted(f, 'b', 1);
  t.ok(lstatSync(path).isFile());
  const v = (await finished(f.engine, f.engine.startVerify())).result as VerifyResult;
  t.same(v.problems, [], 'and the block reads whole');
});

t.test('verify counts an empty directory under a block\'s name as a stray entry, not as an unreferenced block', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await snapshotted(f, 'a', 1);
  const dir = emptyDirectoryUnderABlockName(f.dataDir);
  const v = (await finished(f.engine, f.engine.startVerify())).result as VerifyResult;
  t.match(v, { unreferencedBlocks: 0, strayEntries: 1, strayExamples: [dir] });
});

t.test('gc says how many of the blocks it removed no delete had freed (crash orphans)', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await snapshotted(f, 'a', 1);
  orphanFile(f.dataDir, 100);
  const r = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(r.removedBlocks, 1);
  t.equal(r.orphanBlocks, 1);
  t.equal(r.orphanBytes, 100);
  t.equal(r.keptBlocks, 1);
});

t.test('gc and verify count entries under the store that are no block\'s, and leave them', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await snapshotted(f, 'a', 1);
  const blocks = join(f.dataDir, 'blocks');
  mkdirSync(join(blocks, 'zzz'));
  writeFileSync(join(blocks, 'e40'), 'a file where a fan-out directory goes');
  mkdirSync(join(blocks, 'abc'), { recursive: true });
  writeFileSync(join(blocks, 'abc', 'notes.txt'), 'x');
  const strays = [join(blocks, 'abc', 'notes.txt'), join(blocks, 'e40'), join(blocks, 'zzz')];
  const v = (await finished(f.engine, f.engine.startVerify())).result as VerifyResult;
  t.equal(v.strayEntries, 3);
  t.same(v.strayExamples, strays);
  const g = (await finished(f.engine, f.engine.startGc())).result as GcResult;
  t.equal(g.strayEntries, 3);
  t.same(g.strayExamples, strays);
  for (const p of strays) t.ok(existsSync(p), `${p} is left alone`);
});

t.test('verify counts block files no snapshot references', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await snapshotted(f, 'a', 1);
  orphanFile(f.dataDir, 10);
  const v = (await finished(f.engine, f.engine.startVerify())).result as VerifyResult;
  t.equal(v.unreferencedBlocks, 1);
  t.same(v.problems, []);
});

t.test('verify counts a freed block file the sweep could not unlink as pending free, not as a crash leftover', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  await freedWithStuckBlock(f, 2, 1);
  orphanFile(f.dataDir, 10);
  const v = (await finished(f.engine, f.engine.startVerify())).result as VerifyResult;
  t.equal(v.pendingFreeBlocks, 1);
  t.equal(v.unreferencedBlocks, 1, 'only the file no delete freed');
});

t.test('the engine answers before the sweep of what a cut-off delete freed is done, and a snapshot started then keeps the blocks it stores again', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const { disk, snap } = await snapshotted(f, 'a', 8);
  await f.engine.deleteSnapshot(snap.id);
  // Closing stops the sweep after the block it is unlinking: the rest stays on the free list,
  // as a kill after the delete's commit leaves it.
  await f.engine.close();
  const again = await Engine.open({ dataDir: f.dataDir, imageRoots: [f.images], blockSize: BS });
  t.teardown(() => again.close());
  t.equal(again.storeStats().pendingFreeBlocks, 7, 'open did not wait for the sweep');
  const s = await snapshot(again, disk.id);
  await again.idle();
  t.equal(again.storeStats().pendingFreeBlocks, 0);
  t.equal(blockFiles(f.dataDir).length, 8, 'the new snapshot\'s blocks are all there');
  const v = (await finished(again, again.startVerify())).result as VerifyResult;
  t.same(v.problems, []);
  t.equal(v.checkedBlocks, 8);
  t.equal(s.status, 'available');
});
