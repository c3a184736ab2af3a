/**
 * Disk full: the data dir lives on a small filesystem that the test fills with a ballast file.
 * The snapshot that runs out of space fails with NoSpace; the earlier snapshot stays intact, no
 * block of the failed one is referenced, the daemon keeps serving, and once the ballast is gone
 * a retry succeeds.
 */
import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Job, Snapshot, StoreStats, VerifyResult } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout } from '../crash/daemon-process';
import { ImageWriter } from '../crash/disk-image';
import { Random } from '../helpers/random';
import { ballast, smallFsOrSkip } from './small-fs';

const BLOCK = 64 * 1024;

// With half a MiB left the snapshot writes some blocks before it fails; with nothing left even
// the catalog has to commit the failure without growing.
for (const leave of [512 * 1024, 0]) t.test(`a snapshot that runs out of space (${leave} bytes left) fails with NoSpace and loses nothing`, async (t) => {
  const mounted = smallFsOrSkip(t, 'bsf-', 24);
  if (mounted === null) return;
  const { fs, tempDir: dir } = mounted;
  t.comment(`data dir on a ${fs.kind}`);
  const layout = makeLayout(dir, { blockSize: BLOCK, dataDir: join(fs.dir, 'data') });
  const rng = new Random(7);
  const images = new ImageWriter(BLOCK);
  const small = join(layout.imageRoot, 'small.img');
  const big = join(layout.imageRoot, 'big.img');
  images.create(small, 16, rng);
  const fd = openSync(big, 'w');
  writeSync(fd, rng.bytes(64 * BLOCK)); // 4 MiB of unique blocks
  closeSync(fd);

  const daemon = await DaemonProcess.start(layout);
  t.teardown(() => daemon.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  await c.call('disk.add', { path: small, name: 'small' });
  await c.call('disk.add', { path: big, name: 'big' });
  const first = await c.call<Job>('snapshot.create', { disk: 'small', name: 'before', wait: true });
  t.equal(first.state, 'succeeded', 'the first snapshot fits');
  const expected = images.blockDigests(small);
  const smallSha = ImageWriter.contentSha(small);

  const ballastPath = ballast(fs.dir, leave);
  const full = await c.call<Job>('snapshot.create', { disk: 'big', name: 'too-big', wait: true });
  t.equal(full.state, 'failed', 'the snapshot that does not fit fails');
  t.equal(full.error?.code, 'NoSpace', 'with NoSpace');
  const failed = await c.call<Snapshot>('snapshot.show', { snapshot: 'too-big' });
  t.match(failed, { status: 'error', error: { code: 'NoSpace' } }, 'the snapshot is marked error with the reason');

  t.ok(daemon.alive, 'the daemon is still running');
  t.match(await c.call('disk.list'), [{ name: 'small' }, { name: 'big' }], 'and serving');
  const stats = await c.call<StoreStats>('store.stats');
  t.equal(stats.blocks, expected.size, 'only the earlier snapshot\'s blocks are referenced');
  const clonePath = join(layout.imageRoot, 'before-copy.img');
  t.equal((await c.call<Job>('clone', { snapshot: 'before', path: clonePath, wait: true })).state, 'succeeded', 'the earlier snapshot still clones');
  t.equal(ImageWriter.contentSha(clonePath), smallSha, 'the earlier snapshot clones bit-exactly');
  unlinkSync(clonePath);

  unlinkSync(ballastPath);
  const gc = await c.call<Job>('store.gc', { wait: true });
  t.equal(gc.state, 'succeeded', 'gc runs once space is back');
  t.equal((gc.result as { removedBlocks: number }).removedBlocks, 0, 'and finds nothing: the failed snapshot freed the blocks it wrote');
  const retry = await c.call<Job>('snapshot.create', { disk: 'big', name: 'retry', wait: true });
  t.equal(retry.state, 'succeeded', 'a retry after freeing space succeeds');
  const bigCopy = join(layout.imageRoot, 'big-copy.img');
  t.equal((await c.call<Job>('clone', { snapshot: 'retry', path: bigCopy, wait: true })).state, 'succeeded', 'the retried snapshot clones');
  t.equal(ImageWriter.contentSha(bigCopy), ImageWriter.contentSha(big), 'and clones bit-exactly');
  const verify = await c.call<Job>('store.verify', { wait: true });
  t.same((verify.result as VerifyResult).problems, [], 'store verify is clean');
  t.equal(await daemon.stop(), 0, 'the daemon stops cleanly');
});
