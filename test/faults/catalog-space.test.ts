/**
 * The catalog on a full filesystem, without the daemon: a transaction that may not fit is refused
 * whole with NoSpace (nothing of it committed, the catalog still usable) while small changes
 * still commit; one that deletes snapshots commits in the reserve catalog.mdb keeps past its
 * pages; with the reserve used up a deletion fails with NoSpace saying so; the room comes back
 * with the space, and reopening finds every committed change and none of the refused ones. And a
 * job whose start record cannot be written still runs, so that what its caller holds is given back.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, openSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { open } from 'lmdb';
import { Catalog } from '../../src/catalog/catalog';
import { commitDelta, readView } from '../../src/catalog/block-map';
import type { SnapshotRecord } from '../../src/catalog/records';
import { CATALOG_FILE, META_SCHEMA_VERSION } from '../../src/catalog/schema';
import { removeSnapshot } from '../../src/engine/remove-snapshot';
import { JobRunner } from '../../src/engine/jobs';
import { BlocksnapError } from '../../src/errors';
import { ballast, smallFsOrSkip } from './small-fs';

const BS = 64 * 1024;
const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

function record(id: string, diskId: string, parentId: string | null, blocks: number, at: number): SnapshotRecord {
  return {
    id, diskId, name: id, description: '', status: 'available', type: 'manual', parentId, createdAt: new Date(at).toISOString(),
    completedAt: null, sizeBytes: blocks * BS, blockSize: BS, blockCount: blocks, logicalBytes: 0, changedBlocks: 0, newBytes: 0, error: null, jobId: null,
  };
}

/** Commits a snapshot whose blocks [from, from + count) get fresh digests named by `seed`; the rest as its parent. */
function take(c: Catalog, s: SnapshotRecord, seed: string, from: number, count: number): void {
  c.txn(() => {
    const parent = s.parentId ? c.getSnapshot(s.parentId)! : null;
    const parentView = parent ? readView(c, parent) : null;
    const digests = Buffer.alloc(s.blockCount * 32);
    parentView?.copy(digests);
    for (let i = from; i < from + count; i++) digest(`${seed}-${i}`).copy(digests, i * 32);
    c.putSnapshot(s);
    commitDelta(c, s, digests, parentView);
  });
}

function fill(dir: string, name: string): string {
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    for (;;) writeSync(fd, Buffer.alloc(16 * 1024, 1));
  } catch {
    return path; // full
  } finally {
    closeSync(fd);
  }
}

t.test('catalog writes on a full filesystem: NoSpace, nothing half-committed, deletions in the reserve', async (t) => {
  const small = smallFsOrSkip(t, 'bscs-', 64);
  if (small === null) return;
  const { fs } = small;
  t.comment(`catalog on a ${fs.kind}`);
  const dataDir = join(fs.dir, 'data');
  const warnings: string[] = [];
  const infos: string[] = [];
  const log = { info(_o: object, msg?: string) { infos.push(msg ?? ''); }, warn(_o: object, msg?: string) { warnings.push(msg ?? ''); } };
  let c = Catalog.open(dataDir, BS, { log });
  const opened = c.room();
  t.ok(opened.reserveBytes >= 512 * 1024 && opened.spareBytes > 0, `the room is a reserve of ${opened.reserveBytes} and a spare of ${opened.spareBytes} bytes on this filesystem`);
  t.equal(opened.tailBytes, opened.reserveBytes + opened.spareBytes, 'and catalog.mdb holds it past LMDB\'s pages once opened');

  const N = 2000;
  c.txn(() => {
    for (const id of ['d-1', 'd-2']) c.putDisk({ id, name: id, path: `/x/${id}`, format: 'raw', sizeBytes: N * BS, createdAt: '', headSnapshotId: null, pendingRollback: null, cow: null });
  });
  const root = record('s-1', 'd-1', null, N, 1);
  const child = record('s-2', 'd-1', 's-1', N, 2);
  const other = record('s-3', 'd-2', null, 4 * N, 3);
  take(c, root, 'root', 0, N);
  take(c, child, 'child', 0, 10);
  take(c, other, 'other', 0, 4 * N);
  const totals = c.totals();
  const grown = c.room();
  t.ok(grown.tailBytes >= grown.reserveBytes + grown.spareBytes, `as the catalog grows, its room is kept whole (${JSON.stringify(grown)})`);

  const ballast1 = ballast(fs.dir, 0);
  const big = record('s-4', 'd-2', null, 10 * N, 4);
  t.throws(() => take(c, big, 'big', 0, 10 * N), {
    code: 'NoSpace',
    message: new RegExp(`^the catalog could not be written: the filesystem of the data dir ${dataDir} is full \\([\\d.]+ [KMG]?i?B free; a change of \\d+ entries to a catalog of [\\d.]+ [KMG]?i?B may need up to [\\d.]+ [KMG]?i?B\\)\\. Free space on that filesystem; deleting snapshots frees space`),
  }, 'a change that may not fit in the free space and the spare is NoSpace naming the data dir');
  t.equal(c.getSnapshot('s-4'), undefined, 'nothing of it was committed: no snapshot record');
  t.equal(c.deltaSize('s-4'), 0, 'no map entry');
  t.same(c.totals(), totals, 'the totals are as before');
  t.equal(c.room().tailBytes, grown.tailBytes, 'and the room is untouched');

  const evicting = { ...record('s-5', 'd-1', 's-2', N, 5), status: 'creating' as const };
  t.throws(() => c.txn(() => { removeSnapshot(c, c.getSnapshot('s-1')!); c.putSnapshot(evicting); }), { code: 'NoSpace' },
    'a transaction that deletes a snapshot and starts one gets no reserve: the new one\'s blocks and commit would take that room');
  t.ok(c.getSnapshot('s-1'), 'nothing was deleted');

  c.txn(() => c.putDisk({ ...c.getDisk('d-2')!, name: 'renamed' }));
  t.equal(c.getDisk('d-2')!.name, 'renamed', 'a small change still commits on the full filesystem (the spare, or pages LMDB freed)');

  // Deleting the root moves its 1,990 entries the child does not override into the child.
  const freed = c.txn(() => removeSnapshot(c, c.getSnapshot('s-1')!));
  t.equal(freed.length, 10, 'deleting a snapshot commits on the full filesystem');
  t.match(warnings, [/filesystem is full: a deletion uses the room the catalog keeps for deletions/], 'in the reserve');
  t.equal(c.deltaSize('s-2'), N, 'the child took the root\'s entries');
  t.equal(c.getSnapshot('s-2')!.parentId, null, 'and is the root now');
  const used = c.room().usedBytes;
  await c.close();

  // A reserve used up (cut off here by hand: LMDB never reads past its last page), on a full filesystem.
  truncateSync(join(dataDir, CATALOG_FILE), used);
  const ballast2 = fill(fs.dir, 'ballast2');
  warnings.length = 0;
  c = Catalog.open(dataDir, BS, { log });
  t.match(warnings, [/too little free space for the room the catalog keeps/], 'the catalog opens on the full filesystem, warning that its room is short');
  t.equal(c.room().tailBytes, 0, 'it has none');
  t.throws(() => c.txn(() => removeSnapshot(c, c.getSnapshot('s-3')!)), {
    code: 'NoSpace', message: /room the catalog keeps for deletions is used up and comes back once the filesystem has space: free space on that filesystem by other means/,
  }, 'a deletion that may not fit without it is NoSpace, saying so (LMDB is not asked)');
  t.equal(c.deltaSize('s-3'), 4 * N, 'and commits nothing');
  t.ok(c.getSnapshot('s-3'), 'the snapshot is still there');

  unlinkSync(ballast1);
  unlinkSync(ballast2);
  c.txn(() => c.putDisk({ ...c.getDisk('d-1')!, name: 'renamed-too' }));
  const back = c.room();
  t.equal(back.tailBytes, back.reserveBytes + back.spareBytes, 'the next commit once space is back makes the room whole');
  t.match(infos, [/room the catalog keeps for a full filesystem is whole again/], 'and says so');
  c.txn(() => removeSnapshot(c, c.getSnapshot('s-3')!));
  t.equal(c.getSnapshot('s-3'), undefined, 'the deletion goes through with space');
  await c.close();

  c = Catalog.open(dataDir, BS);
  t.teardown(() => c.close());
  t.same(c.allSnapshots().map((s) => s.id), ['s-2'], 'reopened: exactly the committed snapshots');
  t.equal(c.deltaSize('s-2'), N);
  t.same(c.totals(), { blocks: N, bytes: N * BS }, 'and totals that match the references');
  t.equal(c.refCount(digest('root-100')), 1, 'an inherited block is referenced once');
  t.equal(c.refCount(digest('root-5')), 0, 'a block the child overrode is not');
  t.same(c.allDisks().map((d) => d.name).sort(), ['renamed', 'renamed-too'], 'and the small changes');
});

t.test('a job whose start cannot be recorded on a full data dir still runs, and gives back what its caller holds', async (t) => {
  // startSnapshot takes the disk lock and writes the snapshot record, then starts the job, whose
  // run gives the lock back: a start record refused for lack of space left the disk busy (and the
  // snapshot `creating`) until a restart.
  const full = {
    txn: () => { throw new BlocksnapError('NoSpace', 'the catalog could not be written: full'); },
    allJobs: () => [],
    getJob: () => undefined,
  } as unknown as Catalog;
  const runner = new JobRunner(full, new EventEmitter());
  let released = false;
  const job = runner.start('j-0000000000000001', 'snapshot', { diskId: 'd-1', snapshotId: 's-1', target: null }, async () => {
    released = true;
    throw new BlocksnapError('NoSpace', 'the commit did not fit either');
  });
  t.equal(job.state, 'running', 'the job starts');
  t.same(runner.list().map((j) => j.id), [job.id], 'and is listed while it runs, unrecorded');
  const done = await runner.wait(job.id);
  t.match(done, { state: 'failed', error: { code: 'NoSpace' } }, 'it ends as its run does');
  t.ok(released, 'and its run gave back what the caller held');

});

t.test('a job whose start record fails for any other reason runs too, so its caller\'s locks come back', async (t) => {
  const broken = {
    txn: () => { throw new BlocksnapError('Internal', 'a bug'); },
    allJobs: () => [],
    getJob: () => undefined,
  } as unknown as Catalog;
  const runner = new JobRunner(broken, new EventEmitter());
  let released = false;
  const job = runner.start('j-0000000000000002', 'gc', { diskId: null, snapshotId: null, target: null }, async () => {
    released = true;
    return 0;
  });
  t.equal(job.state, 'running', 'the job starts');
  t.match(await runner.wait(job.id), { state: 'succeeded' }, 'and ends as its run does');
  t.ok(released, 'having given back what its caller held');
});

t.test('a catalog to migrate on a full filesystem is refused before the migration writes', async (t) => {
  const small = smallFsOrSkip(t, 'bscm-', 32);
  if (small === null) return;
  const dataDir = join(small.fs.dir, 'data');
  await Catalog.open(dataDir, BS).close();
  // What blocksnap before copy-on-write disks wrote: schema version 1, disks without `cow`.
  const raw = open({ path: join(dataDir, CATALOG_FILE), compression: false });
  await raw.openDB<Record<string, unknown>, string>({ name: 'disks' }).put('d-1', {
    id: 'd-1', name: 'd-1', path: '/x/d-1', format: 'raw', sizeBytes: BS, createdAt: '', headSnapshotId: null, pendingRollback: null,
  });
  await raw.openDB<unknown, string>({ name: 'meta' }).put(META_SCHEMA_VERSION, 1);
  await raw.close();
  fill(small.fs.dir, 'ballast');

  t.throws(() => Catalog.open(dataDir, BS), { code: 'NoSpace', message: /is full/ });
  const check = open({ path: join(dataDir, CATALOG_FILE), compression: false, readOnly: true });
  t.equal(check.openDB<unknown, string>({ name: 'meta' }).get(META_SCHEMA_VERSION), 1, 'the catalog was not migrated: nothing was written');
  await check.close();
});

t.test('a change refused on a filesystem with plenty free says it has too little for this change, not that it is full', async (t) => {
  const small = smallFsOrSkip(t, 'bscs-', 16);
  if (small === null) return;
  const dataDir = join(small.fs.dir, 'data');
  const c = Catalog.open(dataDir, BS, { log: { info() {}, warn() {} } });
  t.teardown(() => c.close());
  c.txn(() => c.putDisk({ id: 'd-1', name: 'd-1', path: '/x/d-1', format: 'raw', sizeBytes: 80_000 * BS, createdAt: '', headSnapshotId: null, pendingRollback: null, cow: null }));
  // 80,000 entries may need up to 80,000 × 256 bytes past the catalog: more than the ~14 MiB free.
  t.throws(() => take(c, record('s-1', 'd-1', null, 80_000, 1), 'huge', 0, 80_000), {
    code: 'NoSpace',
    message: new RegExp(`^the catalog could not be written: the filesystem of the data dir ${dataDir} has too little free space for this change \\([\\d.]+ MiB free; a change of \\d+ entries`),
  });
});
