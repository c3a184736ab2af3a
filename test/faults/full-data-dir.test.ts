/**
 * The data dir's filesystem filled to the brim, through the real daemon. Deleting a snapshot is
 * how an operator frees space, and it must commit there: it failed with `Internal` and LMDB's
 * text ("Input/output error", or "No space left on device: Attempting to write page …") because
 * its transaction needs more pages than the catalog file has free, while small changes (a disk
 * added, a policy created) fit. A catalog write that cannot be made is NoSpace naming the data
 * dir, never Internal, and LMDB is never left to find out (lmdb-js can corrupt its heap there);
 * the daemon restarts on the full filesystem; once space is back everything works and `store
 * verify` is clean.
 */
import { closeSync, openSync, readFileSync, statSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Job, Snapshot, StoreStats, VerifyResult } from '../../src/engine/types';
import { open } from 'lmdb';
import { reserveTarget, spareTarget } from '../../src/catalog/space-reserve';
import { CATALOG_FILE } from '../../src/catalog/schema';
import { DaemonProcess, connect, makeLayout, sleep } from '../crash/daemon-process';
import { ImageWriter } from '../crash/disk-image';
import { Random } from '../helpers/random';
import { ballast, smallFsOrSkip } from './small-fs';

const BLOCK = 64 * 1024;
const MiB = 1024 * 1024;

function available(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Overwrites `bytes` at `offset` with fresh random data (blocks no snapshot has yet). */
function overwrite(path: string, offset: number, bytes: number, rng: Random): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, rng.bytes(bytes), 0, bytes, offset);
  } finally {
    closeSync(fd);
  }
}

/** Bytes catalog.mdb holds past LMDB's last page, and what it should hold (read beside the daemon). */
function catalogRoom(dataDir: string): { tail: number; target: number } {
  const path = join(dataDir, CATALOG_FILE);
  const env = open({ path, readOnly: true, compression: false });
  try {
    const used = ((env.getStats() as { lastPageNumber: number }).lastPageNumber + 1) * 4096;
    const fsBytes = statfsSync(dataDir).blocks * statfsSync(dataDir).bsize;
    return { tail: statSync(path).size - used, target: reserveTarget(used, fsBytes) + spareTarget(fsBytes) };
  } finally {
    void env.close();
  }
}

/** Fills the filesystem of `dir` with file `name` until `leave` bytes are free (or fewer: nothing more fits). */
function fillTo(dir: string, name: string, leave: number): string {
  const path = join(dir, name);
  const fd = openSync(path, 'a');
  try {
    for (let free = available(dir); free > leave; free = available(dir)) writeSync(fd, Buffer.alloc(Math.min(MiB, free - leave), 1));
  } catch {
    // full
  } finally {
    closeSync(fd);
  }
  return path;
}

t.test('on a full data dir, snapshot delete commits and frees space; a write that cannot be made is NoSpace', async (t) => {
  const mounted = smallFsOrSkip(t, 'bsfd-', 32);
  if (mounted === null) return;
  const { fs, tempDir: dir } = mounted;
  t.comment(`data dir on a ${fs.kind}`);
  const layout = makeLayout(dir, { blockSize: BLOCK, dataDir: join(fs.dir, 'data') });
  const rng = new Random(11);
  const a = join(layout.imageRoot, 'a.img');
  const fd = openSync(a, 'w');
  writeSync(fd, rng.bytes(16 * MiB)); // 256 unique blocks
  closeSync(fd);

  let daemon = await DaemonProcess.start(layout);
  t.teardown(() => daemon.kill());
  let c = await connect(layout);
  t.teardown(() => c.close());
  await c.call('disk.add', { path: a, name: 'a' });
  const snap = async (disk: string, name: string): Promise<Job> => c.call<Job>('snapshot.create', { disk, name, wait: true });
  t.equal((await snap('a', 's1')).state, 'succeeded', 's1');
  overwrite(a, 0, 1 * MiB, rng);
  t.equal((await snap('a', 's2')).state, 'succeeded', 's2 changes 16 blocks');
  const s2Sha = ImageWriter.contentSha(a);
  overwrite(a, 4 * MiB, 1 * MiB, rng);
  t.equal((await snap('a', 's3')).state, 'succeeded', 's3 changes 16 others');
  // Disk b repeats a's blocks: its snapshot stores no block, only 4,096 map entries (a catalog
  // transaction far larger than the free pages of the catalog file).
  const b = join(layout.imageRoot, 'b.img');
  const content = readFileSync(a);
  const fdb = openSync(b, 'w');
  for (let k = 0; k < 16; k++) writeSync(fdb, content);
  closeSync(fdb);
  await c.call('disk.add', { path: b, name: 'b' });
  const room = catalogRoom(layout.dataDir);
  t.ok(room.target > 1 * MiB && room.tail >= room.target, `catalog.mdb keeps room past LMDB's pages (${room.tail} bytes; ${room.target} wanted)`);

  const ballast1 = ballast(fs.dir, 0);
  const full = available(fs.dir);
  t.ok(full < 64 * 1024, `the filesystem is full (${full} bytes free)`);

  const deleted = await c.call<Snapshot>('snapshot.delete', { snapshot: 's1' });
  t.equal(deleted.name, 's1', 'snapshot delete succeeds on the full filesystem');
  // Which part of catalog.mdb's room it took (the spare, or the reserve kept for deletions) depends on the filesystem's size.
  t.comment(/a deletion uses the room the catalog keeps for deletions/.test(daemon.stderr()) ? 'it took the reserve' : 'the spare was enough');
  for (let i = 0; i < 200 && (await c.call<StoreStats>('store.stats')).pendingFreeBlocks > 0; i++) await sleep(25);
  t.ok(available(fs.dir) > full + 512 * 1024, `its blocks are swept: space is free again (${available(fs.dir)} bytes; the catalog's room grows back only while as much stays free)`);
  t.same((await c.call<Snapshot[]>('snapshot.list', { disk: 'a' })).map((s) => s.name), ['s2', 's3'], 's1 is gone, its children stay');
  const s2Copy = join(layout.imageRoot, 's2-copy.img');
  t.equal((await c.call<Job>('clone', { snapshot: 's2', path: s2Copy, wait: true })).state, 'succeeded', 's2 still clones');
  t.equal(ImageWriter.contentSha(s2Copy), s2Sha, 'bit-exactly (it took s1\'s blocks into its own map)');
  unlinkSync(s2Copy);

  // 256 KiB left: room for a snapshot's start records, not for a commit of 4,096 entries.
  const ballast2 = fillTo(fs.dir, 'ballast2', 256 * 1024);
  const roomBefore = catalogRoom(layout.dataDir).tail;
  const tooBig = await snap('b', 'b1');
  t.equal(tooBig.state, 'failed', 'a snapshot whose catalog commit cannot be written fails');
  t.equal(tooBig.error?.code, 'NoSpace', 'with NoSpace, not Internal');
  t.match(tooBig.error?.message, new RegExp(`^the catalog could not be written: the filesystem of the data dir ${layout.dataDir} is full \\([\\d.]+ [KMG]?i?B free; a change of \\d+ entries to a catalog of [\\d.]+ [KMG]?i?B may need up to [\\d.]+ [KMG]?i?B\\)\\. Free space on that filesystem`), 'naming the data dir');
  t.match(await c.call<Snapshot>('snapshot.show', { snapshot: 'b1' }), { status: 'error', error: { code: 'NoSpace' } }, 'the failed snapshot reads error');
  t.ok(catalogRoom(layout.dataDir).tail >= roomBefore - 256 * 1024, 'and took little of the catalog\'s room (recording the failure)');

  const ballast3 = fillTo(fs.dir, 'ballast3', 0);
  const refused = await c.call<Job>('snapshot.create', { disk: 'b', name: 'bx', wait: true })
    .catch((err: { code: string; message: string }) => ({ error: { code: err.code, message: err.message } }));
  t.match(refused, { error: { code: 'NoSpace', message: /catalog could not be written/ } }, 'with nothing free, a snapshot is refused (at once, or at its commit)');
  unlinkSync(ballast3);
  const again = await snap('b', 'b2');
  t.match(again, { state: 'failed', error: { code: 'NoSpace' } }, 'and its disk was not left busy: the next one runs (and fails at its commit)');
  t.notMatch(daemon.stderr(), /Write error|mdb_page_spill/, 'LMDB never met the full filesystem: writes that may not fit are refused before it writes');
  t.ok(daemon.alive, 'the daemon keeps running');
  t.same((await c.call<Snapshot[]>('snapshot.list', { disk: 'a' })).map((s) => s.name), ['s2', 's3'], 'and answers');
  fillTo(fs.dir, 'ballast3', 0);

  // The daemon also starts on the full filesystem (its room is short: a warning).
  c.close();
  t.equal(await daemon.stop(), 0, 'the daemon stops cleanly on the full filesystem');
  daemon = await DaemonProcess.start(layout);
  c = await connect(layout);
  const bs = await c.call<Snapshot[]>('snapshot.list', { disk: 'b' });
  t.ok(bs.length >= 2 && bs.every((x) => x.status === 'error'), 'it comes up: the snapshots that did not fit read error');

  unlinkSync(ballast1);
  unlinkSync(ballast2);
  unlinkSync(ballast3);
  t.equal((await c.call<Job>('store.gc', { wait: true })).state, 'succeeded', 'gc once space is back');
  t.equal((await snap('b', 'b3')).state, 'succeeded', 'the snapshot that did not fit now commits');
  for (const x of bs) await c.call('snapshot.delete', { snapshot: x.id });
  const verify = await c.call<Job>('store.verify', { wait: true });
  t.same((verify.result as VerifyResult).problems, [], 'store verify is clean');
  const back = catalogRoom(layout.dataDir);
  t.ok(back.tail >= back.target, 'the catalog\'s room is whole again');
  c.close();
  t.equal(await daemon.stop(), 0, 'the daemon stops cleanly');
});
