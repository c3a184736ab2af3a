/**
 * A raw rollback to a snapshot of another size on a filesystem that cannot punch holes (bindfs,
 * a FUSE filesystem): the shrink truncates the image and zeroes what it cannot punch, the grow
 * extends it, and either way the image ends up byte for byte the snapshot, at its size, through
 * the real daemon, and the store stays whole. Mounting needs root: the tests skip, saying so,
 * without it.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Job, RollbackResult, VerifyResult } from '../../src/engine/types';
import { DaemonProcess, connect, type Layout } from '../crash/daemon-process';
import { fillBlock, makeImage } from '../helpers/images';
import { mountedOrSkip } from './small-fs';

const BS = 64 * 1024;

/**
 * The daemon serving a raw disk `vm` on a bindfs mount, with its data dir off it, and the
 * image's content as snapshot `small` (4 blocks, block 2 left zero) and as snapshot `big`
 * (12 blocks and a half, its tail holding data and zero blocks), each kept as a copy beside
 * the mount. The image is left as `big`.
 */
async function twoSizes(t: Test) {
  const fs = mountedOrSkip(t, 'bsr-', 'no-punch');
  if (fs === null) return null;
  const configPath = join(fs.tempDir, 'daemon.json');
  writeFileSync(configPath, JSON.stringify({ blockSize: BS, threads: 2 }));
  const layout: Layout = { dir: fs.tempDir, dataDir: join(fs.tempDir, 'data'), imageRoot: fs.dir, socketPath: join(fs.tempDir, 'd.sock'), configPath };
  const daemon = await DaemonProcess.start(layout);
  t.teardown(() => daemon.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());

  const img = makeImage(join(fs.dir, 'vm.raw'), 4 * BS);
  for (const i of [0, 1, 3]) fillBlock(img, i, BS, `small-${i}`);
  await c.call('disk.add', { path: img, name: 'vm' });
  const small = join(fs.tempDir, 'small.raw');
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'small', wait: true })).state, 'succeeded', 'snapshot small is taken');
  copyFileSync(img, small);

  truncateSync(img, 12 * BS + BS / 2);
  fillBlock(img, 1, BS, 'big-1');
  fillBlock(img, 2, BS, 'big-2');
  for (const i of [5, 6, 9]) fillBlock(img, i, BS, `big-${i}`);
  fillBlock(img, 12, BS, 'big-tail', BS / 2);
  const big = join(fs.tempDir, 'big.raw');
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'big', wait: true })).state, 'succeeded', 'snapshot big is taken');
  copyFileSync(img, big);
  return { c, img, small, big };
}

function sameBytes(t: Test, img: string, want: string, what: string): void {
  const r = spawnSync('cmp', [img, want], { encoding: 'utf8' });
  t.equal(r.status, 0, `${what}: byte for byte (${r.stdout.trim() || r.stderr.trim() || 'equal'})`);
  t.equal(statSync(img).size, statSync(want).size, `${what}: the same size`);
}

async function storeClean(t: Test, c: Awaited<ReturnType<typeof connect>>): Promise<void> {
  const verify = await c.call<Job>('store.verify', { wait: true });
  t.equal(verify.state, 'succeeded', 'store verify runs');
  t.same((verify.result as VerifyResult).problems, [], 'store verify is clean');
}

t.test('a rollback that shrinks an image where holes cannot be punched leaves it byte for byte the snapshot', async (t) => {
  const f = await twoSizes(t);
  if (f === null) return;
  const job = await f.c.call<Job>('rollback', { disk: 'vm', snapshot: 'small', wait: true });
  t.equal(job.state, 'succeeded', job.error?.message ?? 'the rollback succeeds');
  const r = job.result as RollbackResult;
  t.match(r, { previousSizeBytes: 12 * BS + BS / 2, sizeBytes: 4 * BS, holesPunched: 0, blocksZeroed: 1 }, 'the data over the ZERO block is zeroed, not punched');
  sameBytes(t, f.img, f.small, 'shrunk');
  const disk = await f.c.call<{ sizeBytes: number; pendingRollback: unknown }>('disk.show', { disk: 'vm' });
  t.match(disk, { sizeBytes: 4 * BS, pendingRollback: null }, 'the disk records the size and no unfinished rollback');
  await storeClean(t, f.c);
});

t.test('a rollback that grows an image back where holes cannot be punched leaves it byte for byte the snapshot', async (t) => {
  const f = await twoSizes(t);
  if (f === null) return;
  t.equal((await f.c.call<Job>('rollback', { disk: 'vm', snapshot: 'small', wait: true })).state, 'succeeded', 'shrunk to small first');
  // Data past the small image's end, over block 7, which is zero in `big`: the grow must zero it.
  fillBlock(f.img, 7, BS, 'again-7');
  const job = await f.c.call<Job>('rollback', { disk: 'vm', snapshot: 'big', wait: true });
  t.equal(job.state, 'succeeded', job.error?.message ?? 'the rollback succeeds');
  t.match(job.result as RollbackResult, { previousSizeBytes: 8 * BS, sizeBytes: 12 * BS + BS / 2, holesPunched: 0, blocksZeroed: 1 }, 'the data past the old end over a ZERO block is zeroed');
  sameBytes(t, f.img, f.big, 'grown');
  await storeClean(t, f.c);
});
