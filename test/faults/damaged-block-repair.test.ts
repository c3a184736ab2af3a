/**
 * A stored block damaged in place (a flipped payload or header byte) keeps its size, so a scan
 * that produces the block would take the file for present and reference it as it is. Once the
 * damage is known (found by `store verify`, or by a rollback or clone that read the block), the
 * next snapshot of any disk whose image holds the good bytes writes the block again, over the
 * damaged file: afterwards verify is clean and the old snapshots restore bit-exact. A daemon
 * killed during that snapshot leaves each such file either damaged or whole, never partial. A
 * snapshot that would reference a known-damaged block without writing it (a copy-on-write disk
 * whose unwritten block reads its base) fails instead of being committed `available`.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Job, Snapshot, VerifyResult } from '../../src/engine/types';
import { sleep } from '../crash/daemon-process';
import { ImageWriter } from '../crash/disk-image';
import { makeImage, pattern, writeAt } from '../helpers/images';
import { snapshottedDisk, start } from '../helpers/snapshotted-disk';
import { blockPath, flipByte, sha } from '../helpers/store-damage';

const BLOCK = 64 * 1024;
const HEADER = 64;

t.test('found by verify: the next snapshot of the disk, its block unchanged, writes it again', async (t) => {
  const { layout, image, c, s1 } = await snapshottedDisk(t, { label: 'v', blocks: 4 });
  const sha1 = ImageWriter.contentSha(image);

  const rotten = sha(pattern('v-1', BLOCK));
  flipByte(blockPath(layout.dataDir, rotten), HEADER + 1234);
  const found = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.match(found.problems, [{ digest: rotten, reason: 'digest-mismatch', snapshots: [s1.id], disks: [s1.diskId], repairable: true }]);
  t.equal(found.awaitingRepair, 1, 'the damaged block is listed for repair');

  // Nothing changed in the image: every block equals the parent's, the damaged one included.
  const s2 = await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true });
  t.equal(s2.state, 'succeeded');
  const after = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.same(after.problems, [], 'verify is clean after the snapshot');
  t.equal(after.awaitingRepair, 0, 'and nothing is listed any more');
  t.equal(sha(readFileSync(blockPath(layout.dataDir, rotten)).subarray(HEADER)), rotten, 'the file holds the good bytes');

  const target = join(layout.imageRoot, 'copy.img');
  const clone = await c.call<Job>('clone', { snapshot: 's1', path: target, wait: true });
  t.equal(clone.state, 'succeeded', 'the old snapshot clones again');
  t.equal(ImageWriter.contentSha(target), sha1, 'bit-exact');
});

t.test('found by a rollback, no verify: a snapshot of another disk holding the bytes writes it again', async (t) => {
  const { layout, image, c } = await snapshottedDisk(t, { label: 'r', blocks: 3 });
  const sha1 = ImageWriter.contentSha(image);

  const rotten = sha(pattern('r-0', BLOCK));
  flipByte(blockPath(layout.dataDir, rotten), HEADER + 77);
  writeAt(image, 0, pattern('guest', BLOCK));
  const rollback = await c.call<Job>('rollback', { disk: 'vm', snapshot: 's1', wait: true });
  t.equal(rollback.error?.code, 'DigestMismatch', 'the rollback meets the damage');

  // Another disk holds the good bytes, at another position.
  const other = join(layout.imageRoot, 'other.img');
  makeImage(other, 2 * BLOCK);
  writeAt(other, 0, pattern('o-0', BLOCK));
  writeAt(other, BLOCK, pattern('r-0', BLOCK));
  await c.call('disk.add', { path: other, name: 'other' });
  const snap = await c.call<Job>('snapshot.create', { disk: 'other', name: 'o1', wait: true });
  t.equal(snap.state, 'succeeded');

  const verify = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.same(verify.problems, [], 'verify is clean');
  const again = await c.call<Job>('rollback', { disk: 'vm', snapshot: 's1', wait: true });
  t.equal(again.state, 'succeeded', 'the rollback now succeeds');
  t.equal(ImageWriter.contentSha(image), sha1, 'and the image is bit-exact');
});

t.test('found by a clone (a damaged header), no verify: the next snapshot of the disk writes it again', async (t) => {
  const { layout, image, c } = await snapshottedDisk(t, { label: 'h', blocks: 2 });
  const sha1 = ImageWriter.contentSha(image);

  const rotten = sha(pattern('h-1', BLOCK));
  flipByte(blockPath(layout.dataDir, rotten), 3); // the magic: BlockCorrupt
  const target = join(layout.imageRoot, 'copy.img');
  const failed = await c.call<Job>('clone', { snapshot: 's1', path: target, wait: true });
  t.equal(failed.error?.code, 'BlockCorrupt', 'the clone meets the damage');

  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true })).state, 'succeeded');
  const clone = await c.call<Job>('clone', { snapshot: 's1', path: target, wait: true });
  t.equal(clone.state, 'succeeded', 'the old snapshot clones again');
  t.equal(ImageWriter.contentSha(target), sha1, 'bit-exact');
  t.same(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems, []);
});

t.test('a copy-on-write disk whose unwritten block reads a damaged base is not snapshotted until the block is repaired', async (t) => {
  const { layout, c } = await snapshottedDisk(t, { label: 'c', blocks: 2 });
  await c.call('clone.cow', { snapshot: 's1', name: 'cow' });

  const rotten = sha(pattern('c-1', BLOCK));
  flipByte(blockPath(layout.dataDir, rotten), HEADER + 9);
  await c.call<Job>('store.verify', { wait: true });
  const refused = await c.call<Job>('snapshot.create', { disk: 'cow', name: 'k1', wait: true });
  t.equal(refused.state, 'failed', 'the snapshot is not committed available over a damaged block');
  t.equal(refused.error?.code, 'DigestMismatch');
  t.match(refused.error?.message, /snapshot a disk whose image holds the block's good content/, 'the error says how to repair it');
  t.match(await c.call<Snapshot>('snapshot.show', { snapshot: refused.snapshotId }), { status: 'error' });

  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true })).state, 'succeeded', 'the image disk writes it again');
  t.equal((await c.call<Job>('snapshot.create', { disk: 'cow', name: 'k2', wait: true })).state, 'succeeded', 'then the copy-on-write disk is snapshotted');
  t.same(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems, []);
});

t.test('a daemon killed while a snapshot repairs blocks leaves each file damaged or whole, never partial', async (t) => {
  const BIG = 1024 * 1024;
  const BLOCKS = 24;
  const { layout, image, ...served } = await snapshottedDisk(t, { label: 'k', blocks: BLOCKS, blockSize: BIG });
  let { daemon, c } = served;
  const digests = Array.from({ length: BLOCKS }, (_, i) => sha(pattern(`k-${i}`, BIG)));
  const sha1 = ImageWriter.contentSha(image);
  const damagedBytes = new Map<string, Buffer>();
  for (const d of digests) {
    flipByte(blockPath(layout.dataDir, d), HEADER + 4096);
    damagedBytes.set(d, readFileSync(blockPath(layout.dataDir, d)));
  }
  t.equal(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems.length, BLOCKS);

  const states = { damaged: 0, whole: 0 };
  const inode = (d: string): number => statSync(blockPath(layout.dataDir, d)).ino;
  for (let round = 0; round < 4; round++) {
    // Killed as soon as the snapshot has renamed its first fresh file over a damaged one (or
    // after a while, should it never get there): mid-repair.
    const before = digests.map(inode);
    void c.call<Job>('snapshot.create', { disk: 'vm', wait: false }).catch(() => undefined);
    for (let waited = 0; waited < 10_000 && digests.every((d, i) => inode(d) === before[i]); waited++) await sleep(1);
    await sleep(round);
    await daemon.kill();
    c.close();
    for (const d of digests) {
      const path = blockPath(layout.dataDir, d);
      const file = readFileSync(path);
      t.equal(statSync(path).size, HEADER + BIG, 'the name never holds a partial file');
      if (sha(file.subarray(HEADER)) === d) states.whole++;
      else if (file.equals(damagedBytes.get(d)!)) states.damaged++;
      else t.fail(`block ${d} holds neither the damaged nor the good bytes`);
    }
    ({ daemon, c } = await start(t, layout));
    t.same(readdirSync(join(layout.dataDir, 'blocks', 'tmp')), [], 'the start removes temp files');
  }
  t.comment(`after the kills: ${states.whole} whole, ${states.damaged} damaged block files seen`);
  t.ok(states.whole > 0, 'the kills landed after the repair had begun');

  // Whatever the kills left, the marks survived them: the next snapshot finishes the repair.
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'last', wait: true })).state, 'succeeded');
  const verify = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.same(verify.problems, [], 'verify is clean');
  t.equal(verify.awaitingRepair, 0);
  const target = join(layout.imageRoot, 'copy.img');
  t.equal((await c.call<Job>('clone', { snapshot: 's1', path: target, wait: true })).state, 'succeeded');
  t.equal(ImageWriter.contentSha(target), sha1, 'the first snapshot clones bit-exact');
});
