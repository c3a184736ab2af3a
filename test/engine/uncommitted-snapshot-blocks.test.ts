/**
 * A snapshot that is cancelled or fails after its scan stored blocks gives them back: they go on
 * the free list and the sweeper unlinks them, as for a failed import. Without that they stayed in
 * the store invisible to `store stats` (0 blocks, 0 bytes, 0 pending) until a manual `store gc`,
 * and on a filesystem a NoSpace had filled, they were the space the operator needed back.
 * Blocks another snapshot references stay, including one committed while the scan ran.
 */
import { existsSync, mkdirSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import type { Job, VerifyResult } from '../../src/engine/types';
import { randomData } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';
import { smallFsOrSkip } from '../faults/small-fs';

const BLOCK = 64 * 1024;

/** Every block file in the store (temp files aside). */
function blockFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'blocks');
  return readdirSync(dir).filter((d) => /^[0-9a-f]{3}$/.test(d)).flatMap((d) => readdirSync(join(dir, d)));
}

async function open(t: Test, dataDir: string, images: string): Promise<Engine> {
  mkdirSync(images, { recursive: true });
  // One scan thread: the scan runs long enough for the test to act while it does.
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BLOCK, threads: 1 });
  t.teardown(() => engine.close());
  return engine;
}

/** Resolves once the job has stored at least `n` block files more than `before`; fails if it ended first. */
async function whenStored(engine: Engine, dataDir: string, job: Job, before: number, n: number): Promise<void> {
  for (;;) {
    if (engine.getJob(job.id).state !== 'running') throw new Error(`the snapshot ended (${engine.getJob(job.id).state}) before it stored ${n} blocks`);
    if (blockFiles(dataDir).length >= before + n) return;
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** No block file but the referenced ones, nothing pending, and the store verifies. */
async function onlyReferenced(t: Test, engine: Engine, dataDir: string): Promise<void> {
  await engine.idle();
  const stats = engine.storeStats();
  t.equal(stats.pendingFreeBlocks, 0, 'nothing is left pending');
  t.equal(blockFiles(dataDir).length, stats.blocks, 'every block file left is referenced');
  const verify = await engine.waitJob(engine.startVerify().id);
  t.same((verify.result as VerifyResult).problems, [], 'store verify is clean');
}

t.test('a snapshot cancelled mid-scan leaves no unreferenced block file, and keeps the shared ones', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  const engine = await open(t, dataDir, images);
  const shared = randomData(4 * BLOCK);
  writeFileSync(join(images, 'a.img'), shared);
  writeFileSync(join(images, 'b.img'), Buffer.concat([shared, randomData(1024 * BLOCK)]));
  await engine.addDisk({ path: join(images, 'a.img'), name: 'a' });
  await engine.addDisk({ path: join(images, 'b.img'), name: 'b' });
  const a = await engine.waitJob(engine.startSnapshot('a').id);
  t.equal(a.state, 'succeeded');
  const before = blockFiles(dataDir).length;

  const job = engine.startSnapshot('b', { name: 'cancelled' });
  await whenStored(engine, dataDir, job, before, 8);
  const done = await engine.waitJob(engine.cancelJob(job.id).id);
  t.equal(done.state, 'cancelled');
  t.same(engine.listSnapshots('b'), [], 'the cancelled snapshot is gone');
  await onlyReferenced(t, engine, dataDir);
  for (let i = 0; i < 4; i++) t.ok(existsSync(blockPath(dataDir, sha(shared.subarray(i * BLOCK, (i + 1) * BLOCK)))), `shared block ${i} stays`);
});

t.test('a block another disk\'s snapshot commits while the scan that stored it runs stays when that scan is cancelled', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  const engine = await open(t, dataDir, images);
  const first = randomData(BLOCK);
  writeFileSync(join(images, 'big.img'), Buffer.concat([first, randomData(1024 * BLOCK)]));
  writeFileSync(join(images, 'one.img'), first);
  await engine.addDisk({ path: join(images, 'big.img'), name: 'big' });
  await engine.addDisk({ path: join(images, 'one.img'), name: 'one' });

  const job = engine.startSnapshot('big');
  const firstFile = blockPath(dataDir, sha(first));
  // The store writers take blocks in parallel: block 0 may land after later ones.
  while (!existsSync(firstFile)) {
    if (engine.getJob(job.id).state !== 'running') throw new Error('the scan ended before it stored the block both disks hold');
    await new Promise((r) => setTimeout(r, 1));
  }
  const one = await engine.waitJob(engine.startSnapshot('one').id);
  t.equal(one.state, 'succeeded', 'a snapshot of the other disk commits it meanwhile');
  t.equal(engine.getJob(job.id).state, 'running', 'while the first scan still runs');
  await engine.waitJob(engine.cancelJob(job.id).id);
  await onlyReferenced(t, engine, dataDir);
  t.ok(existsSync(firstFile), 'the block the other snapshot references stays');
  t.equal(engine.storeStats().blocks, 1);
});

t.test('a snapshot failing with NoSpace gives the space its blocks took back, and says so', async (t) => {
  const mounted = smallFsOrSkip(t, 'bsorph-', 24);
  if (mounted === null) return;
  const dataDir = join(mounted.fs.dir, 'data');
  const images = join(mounted.tempDir, 'images');
  const engine = await open(t, dataDir, images);
  const small = randomData(8 * BLOCK);
  writeFileSync(join(images, 'small.img'), small);
  writeFileSync(join(images, 'big.img'), Buffer.concat([small, randomData(640 * BLOCK)])); // 40 MiB: cannot fit
  await engine.addDisk({ path: join(images, 'small.img'), name: 'small' });
  await engine.addDisk({ path: join(images, 'big.img'), name: 'big' });
  t.equal((await engine.waitJob(engine.startSnapshot('small').id)).state, 'succeeded');
  const free = (): number => { const s = statfsSync(dataDir); return s.bavail * s.bsize; };
  const freeBefore = free();

  const failed = await engine.waitJob(engine.startSnapshot('big', { name: 'too-big' }).id);
  t.equal(failed.state, 'failed');
  t.equal(failed.error?.code, 'NoSpace');
  t.match(failed.error?.message, /block\(s\) this snapshot had stored are freed again/, 'the error says the space is given back');
  t.match(engine.getSnapshot('too-big'), { status: 'error', error: { code: 'NoSpace', message: /freed again/ } });
  await onlyReferenced(t, engine, dataDir);
  t.equal(engine.storeStats().blocks, 8, 'the first snapshot\'s blocks stay');
  t.ok(free() >= freeBefore - 4 * 1024 * 1024, `the space is back without gc (${free()} bytes free, ${freeBefore} before)`);
});
