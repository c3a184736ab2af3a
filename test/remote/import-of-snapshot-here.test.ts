/**
 * `import REMOTE SNAP` of a snapshot that is here already with the manifest's map mends it
 * (import-mend.ts): the blocks the store lost or holds damaged are downloaded and written again,
 * nothing else is downloaded, and the catalog is left as it was. A manifest with the same id and
 * another map is still refused. Engines on one in-memory bucket (memory-engine.ts).
 */
import { readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { ImportResult } from '../../src/engine/offsite-types';
import type { Job, VerifyResult } from '../../src/engine/types';
import { blockKey, manifestKey } from '../../src/remote/layout';
import { decodeManifest, encodeManifest } from '../../src/remote/manifest';
import { BLOCK_HEADER_SIZE } from '../../src/store/format';
import { markOf } from '../helpers/damage-marks';
import { finished, snapshot } from '../helpers/engine';
import { makeImage, pattern } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { blockPath, flipByte, sha } from '../helpers/store-damage';
import { MemoryStore } from './memory-store';
import { isBlockKey, openHost, replicate } from './memory-engine';

/** Disk vm of 4 blocks, snapshotted as s1 and replicated; `gets` lists the block GETs from then on. */
async function replicatedHere(t: Test) {
  const shared = new MemoryStore();
  const h = await openHost(t, shared);
  const vm = await h.disk('vm', 4);
  const s = await snapshot(h.engine, vm.id, 's1');
  await replicate(h, s.id);
  const gets: string[] = [];
  h.store.hook = (op, key) => { if (op === 'get' && isBlockKey(key)) gets.push(key); };
  const hexOf = (i: number): string => sha(pattern(`vm-${i}`, KiB64));
  const block = (i: number): string => blockPath(h.dataDir, hexOf(i));
  const importIt = (disk = 'vm'): Promise<Job> => h.engine.waitJob(h.engine.offsite.remoteRestore.startImport('off', s.id, disk).id);
  return { ...h, shared, vm, s, gets, hexOf, block, importIt };
}

async function verify(h: { engine: import('../../src/engine').Engine }): Promise<VerifyResult> {
  return (await finished(h.engine, h.engine.startVerify())).result as VerifyResult;
}

t.test('an import of a snapshot here downloads again a block file deleted and one truncated, and changes no catalog entry', async (t) => {
  const h = await replicatedHere(t);
  const before = h.engine.listSnapshots();
  rmSync(h.block(1));
  truncateSync(h.block(2), 4096);
  const job = await h.importIt();
  t.equal(job.state, 'succeeded', job.error?.message ?? '');
  t.match(job.result as ImportResult, { snapshotId: h.s.id, name: 's1', mended: true, repairedBlocks: 2, presentBlocks: 2, storedBlocks: 0, storedBytes: 0 });
  t.same(h.engine.listSnapshots(), before, 'the catalog is as it was');
  const v = await verify(h);
  t.same(v.problems, [], 'store verify finds the store whole');
  t.equal(v.awaitingRepair, 0);
  const clone = join(h.images, 'clone.raw');
  await finished(h.engine, h.engine.startClone(h.s.id, clone));
  t.ok(readFileSync(clone).equals(readFileSync(h.vm.path)), 'the snapshot clones to the original bytes');
});

t.test('an import of a snapshot here downloads only its missing or damaged blocks', async (t) => {
  const h = await replicatedHere(t);
  rmSync(h.block(1));
  truncateSync(h.block(2), 4096);
  await finished(h.engine, h.engine.offsite.remoteRestore.startImport('off', h.s.id, 'vm'));
  t.same(h.gets.sort(), [blockKey('site', h.hexOf(1)), blockKey('site', h.hexOf(2))].sort());
});

t.test('an import of a snapshot here downloads again a block file that fails its digest', async (t) => {
  const h = await replicatedHere(t);
  flipByte(h.block(0), BLOCK_HEADER_SIZE + 11);
  const job = await h.importIt();
  t.match(job.result as ImportResult, { mended: true, repairedBlocks: 1, presentBlocks: 3 });
  t.same(h.gets, [blockKey('site', h.hexOf(0))]);
  t.equal(sha(readFileSync(h.block(0)).subarray(BLOCK_HEADER_SIZE)), h.hexOf(0), 'the block file is whole again');
});

t.test('an import of a snapshot here forgets the marks of the blocks it writes again', async (t) => {
  const h = await replicatedHere(t);
  rmSync(h.block(2));
  t.equal((await h.engine.waitJob(h.engine.startClone(h.s.id, join(h.images, 'first.raw')).id)).error?.code, 'BlockMissing');
  t.ok(markOf(h.engine, h.hexOf(2)), 'the clone recorded the lost block');
  t.match((await h.importIt()).result, { mended: true, repairedBlocks: 1 });
  t.equal(markOf(h.engine, h.hexOf(2)), undefined);
});

t.test('an import of a sound snapshot here downloads and writes nothing', async (t) => {
  const h = await replicatedHere(t);
  const files = [0, 1, 2, 3].map((i) => statSync(h.block(i), { bigint: true }));
  const job = await h.importIt();
  t.match(job.result as ImportResult, { mended: true, repairedBlocks: 0, presentBlocks: 4 });
  t.same(h.gets, [], 'no block was downloaded');
  t.same([0, 1, 2, 3].map((i) => statSync(h.block(i), { bigint: true })).map((s) => [s.ino, s.mtimeNs]), files.map((s) => [s.ino, s.mtimeNs]),
    'no block file was written');
});

t.test('a block the remote holds damaged fails the mend with RemoteCorrupt, and nothing is written from it', async (t) => {
  const h = await replicatedHere(t);
  rmSync(h.block(1));
  const key = blockKey('site', h.hexOf(1));
  h.shared.objects.get(key)!.body[7] ^= 0xff;
  const job = await h.importIt();
  t.equal(job.error?.code, 'RemoteCorrupt');
  t.throws(() => statSync(h.block(1)), { code: 'ENOENT' }, 'the block stays missing');
});

t.test('a remote snapshot with the id of a snapshot here and another map is refused SnapshotExists, and writes nothing', async (t) => {
  const h = await replicatedHere(t);
  const before = h.engine.listSnapshots();
  rmSync(h.block(1));
  const key = manifestKey('site', h.vm.id, h.s.id);
  const m = decodeManifest(h.shared.objects.get(key)!.body, key);
  const other = pattern('other', KiB64);
  Buffer.from(sha(other), 'hex').copy(m.map, 2 * 32);
  await h.shared.put(key, encodeManifest(m));
  await h.shared.put(blockKey('site', sha(other)), other);
  const job = await h.importIt();
  t.equal(job.error?.code, 'SnapshotExists');
  t.match(job.error?.message, `snapshot ${h.s.id} is already in this catalog with another block map than the remote copy's`);
  t.same(h.engine.listSnapshots(), before, 'the catalog is as it was');
  t.same(h.gets, [], 'no block was downloaded');
  t.throws(() => statSync(h.block(1)), { code: 'ENOENT' }, 'the lost block stays lost');
});

t.test('an import of a snapshot here under another disk is refused, naming the snapshot\'s disk', async (t) => {
  const h = await replicatedHere(t);
  await h.engine.addDisk({ path: makeImage(join(h.images, 'other.raw'), 4 * KiB64), name: 'other' });
  const job = await h.importIt('other');
  t.equal(job.error?.code, 'SnapshotExists');
  t.match(job.error?.message, 'as a snapshot of disk vm: a remote copy of it mends it only when imported with --disk vm');
});
