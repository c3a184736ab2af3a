/**
 * A job that meets a damaged or missing block says which snapshot it could not read and the way
 * out (store verify names every snapshot sharing the block; a snapshot of a disk holding its
 * content writes it again), as a rollback does: the store's own message names the block only.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openEngine, snapshot } from '../helpers/engine';
import { served } from '../helpers/cow';
import { MiB, makeImage, pattern, writeAt } from '../helpers/images';
import { blockPath, flipByte, sha } from '../helpers/store-damage';

const BLOCK = MiB;
const GRANULE = 64 * 1024;
const WAY_OUT = /`blocksnap store verify` names the damaged block and every snapshot that shares it; a snapshot of any disk whose image still holds its content writes it again/;

/** A disk of two 1 MiB blocks, snapshotted as `nightly`; `rotten` is the digest of its block 1. */
async function damagedSnapshot(t: Test) {
  const f = await openEngine(t, { blockSize: BLOCK });
  const image = makeImage(join(f.images, 'vm.raw'), 2 * BLOCK);
  for (let i = 0; i < 2; i++) writeAt(image, i * BLOCK, pattern(`b-${i}`, BLOCK));
  const disk = await f.engine.addDisk({ path: image, name: 'vm' });
  const snap = await snapshot(f.engine, disk.id, 'nightly');
  return { ...f, snap, rotten: sha(pattern('b-1', BLOCK)) };
}

t.test('a clone that meets a damaged block names the snapshot and the way out', async (t) => {
  const { engine, dataDir, images, snap, rotten } = await damagedSnapshot(t);
  flipByte(blockPath(dataDir, rotten), 64 + 5000);
  const target = join(images, 'copy.raw');
  const job = await engine.waitJob(engine.startClone(snap.id, target).id);
  t.equal(job.error?.code, 'DigestMismatch');
  t.match(job.error?.message, `Snapshot nightly (${snap.id} of disk vm) cannot be read whole: the block is recorded for repair`);
  t.match(job.error?.message, WAY_OUT);
  t.match(job.error?.message, /Then clone it again/);
  t.notOk(existsSync(target));
});

t.test('a stream export that meets a missing block names the snapshot and the way out', async (t) => {
  const { engine, dataDir, images, snap, rotten } = await damagedSnapshot(t);
  unlinkSync(blockPath(dataDir, rotten));
  const job = await engine.waitJob(engine.offsite.streams.startExport(snap.id, join(images, 'vm.stream')).id);
  t.equal(job.error?.code, 'BlockMissing');
  t.match(job.error?.message, `Snapshot nightly (${snap.id} of disk vm) cannot be read whole`);
  t.match(job.error?.message, WAY_OUT);
  t.match(job.error?.message, /Then export it again/);
});

t.test('a copy-on-write snapshot of a block partly written over a damaged base block names the base and the way out', async (t) => {
  const { engine, dataDir, snap, rotten } = await damagedSnapshot(t);
  const cow = await engine.cloneCow(snap.id, 'cow');
  flipByte(blockPath(dataDir, rotten), 64 + 10 * GRANULE + 5); // in granule 10 of block 1
  const backend = await served(engine, cow.id);
  // A write into granule 0 of block 1: its copy-up reads and checks base granule 0 only.
  await backend.write!(BLOCK + 100, pattern('guest', 512), false);
  const job = await engine.waitJob(engine.startSnapshot(cow.id, { name: 'cw' }).id);
  t.equal(job.error?.code, 'DigestMismatch');
  t.match(job.error?.message, `The base of copy-on-write disk cow, snapshot nightly (${snap.id}) cannot be read whole`);
  t.match(job.error?.message, WAY_OUT);
});
