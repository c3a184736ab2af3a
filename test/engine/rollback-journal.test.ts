/**
 * The rollback journal when a rollback does not finish. A qcow2 rollback touches its disk only by
 * renaming its new image over the disk file, so one that fails or is cancelled while the disk's
 * path still names the journaled file clears the journal: the disk is as it was and takes
 * snapshots (before, it refused every snapshot with RollbackIncomplete until the rollback was
 * finished). Once the file is another one (renamed over), and for journals without the file
 * (raw disks; journals an older version wrote), the journal stays. `abandonRollback` clears one
 * explicitly.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine, type EngineLogger } from '../../src/engine';
import { Catalog } from '../../src/catalog/catalog';
import { BlocksnapError } from '../../src/errors';
import type { Job } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern, sha256File } from '../helpers/images';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import type { writeQcow2 } from '../../src/native';

const BS = 64 * 1024;

interface Opened { engine: Engine; logs: string[] }

async function open(t: Test, dataDir: string, images: string, o: { blockSize?: number } = {}): Promise<Opened> {
  const logs: string[] = [];
  const keep = (_obj: object, msg?: string): void => { if (msg !== undefined) logs.push(msg); };
  const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
  const engine = await Engine.open({ dataDir, imageRoots: [images], logger, ...(o.blockSize ? { blockSize: o.blockSize } : {}) });
  t.teardown(() => engine.close());
  return { engine, logs };
}

function dirs(t: Test): { dataDir: string; images: string } {
  const dir = t.testdir({ images: {} });
  return { dataDir: join(dir, 'data'), images: join(dir, 'images') };
}

/** Resolves once the job has written something (or ended). */
function progressed(engine: Engine, jobId: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (j: Job): void => {
      if (j.id !== jobId || (j.state === 'running' && j.doneBytes === 0)) return;
      engine.off('job', on);
      resolve();
    };
    engine.on('job', on);
  });
}

/**
 * Test hook: the next `n` qcow2 writes wait for their job's cancel before they start, so the
 * cancel always lands while the rollback is journaled and writing, however fast the write would be.
 * `started()` resolves once the next held write is waiting.
 */
function holdQcow2Writes(t: Test, n: number): { started(): Promise<void> } {
  const native = require('../../src/native') as { writeQcow2: typeof writeQcow2 };
  const real = native.writeQcow2;
  const waiting: (() => void)[] = [];
  const arrivals: Promise<void>[] = Array.from({ length: n }, () => new Promise<void>((resolve) => waiting.push(resolve)));
  let held = 0;
  native.writeQcow2 = async (o) => {
    if (held === n) return real(o);
    waiting[held++]!();
    await new Promise<void>((resolve) => {
      if (o.signal?.aborted) resolve();
      else o.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    return real(o);
  };
  t.teardown(() => { native.writeQcow2 = real; });
  let next = 0;
  return { started: () => arrivals[next++]! };
}

/** A qcow2 disk full of 0x41, snapshotted as `base`, then changed to 0x42 (a copy of that kept as raw). */
async function changedQcow2(engine: Engine, images: string, size = '256M') {
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, size);
  qemuIo(img, 'qcow2', `write -P 0x41 0 ${size}`);
  const disk = await engine.addDisk({ path: img });
  const base = await snapshot(engine, disk.id, 'base');
  qemuIo(img, 'qcow2', `write -P 0x42 0 ${size}`);
  const changed = join(images, '..', 'changed.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, changed);
  return { img, disk, base, changed };
}

t.test('qcow2', { skip: haveQemu() }, async (t) => {
  t.test('a cancelled qcow2 rollback clears its journal: the disk is as it was and takes snapshots', async (t) => {
    const { dataDir, images } = dirs(t);
    const { engine, logs } = await open(t, dataDir, images);
    const { img, disk, base, changed } = await changedQcow2(engine, images);
    const job = engine.startRollback(disk.id, base.id);
    await progressed(engine, job.id);
    engine.cancelJob(job.id);
    const done = await engine.waitJob(job.id);
    t.equal(done.state, 'cancelled', 'the rollback was cancelled while it wrote its new image');
    t.match(done.error?.message, /vm\.qcow2 is as it was .*takes snapshots as before/, 'its error says the disk is as it was');
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing left journaled');
    t.ok(logs.some((m) => /qcow2 rollback cancelled before its new image replaced the disk file; .*journal was cleared/.test(m)), 'and the daemon logged why');
    t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the image was not touched');
    const after = await snapshot(engine, disk.id, 'after');
    t.equal(after.status, 'available', 'a snapshot of the disk works at once');
    t.throws(() => engine.abandonRollback(disk.id), { code: 'RollbackNotPending' }, 'there is nothing to abandon');
  });

  t.test('a failed qcow2 rollback clears its journal too, and keeps its error', async (t) => {
    const { dataDir, images } = dirs(t);
    const { engine } = await open(t, dataDir, images);
    const { img, disk, base, changed } = await changedQcow2(engine, images, '8M');
    // Test hook: the write fails once it is journaled, as an I/O error while writing the new image would.
    const native = require('../../src/native') as { writeQcow2: typeof writeQcow2 };
    const real = native.writeQcow2;
    native.writeQcow2 = async () => {
      native.writeQcow2 = real;
      throw new BlocksnapError('IOError', 'injected write failure');
    };
    t.teardown(() => { native.writeQcow2 = real; });
    const done = await engine.waitJob(engine.startRollback(disk.id, base.id).id);
    t.equal(done.state, 'failed');
    t.equal(done.error?.code, 'IOError', 'the job ends with the error that stopped it');
    t.match(done.error?.message, /^injected write failure; disk vm\.qcow2 is as it was/);
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing left journaled');
    t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the image was not touched');
    await snapshot(engine, disk.id);
    await finished(engine, engine.startRollback(disk.id, base.id));
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'a rollback later completes as ever');
  });

  t.test('a shutdown in the middle of a qcow2 rollback clears its journal', async (t) => {
    const { dataDir, images } = dirs(t);
    let { engine } = await open(t, dataDir, images);
    const { img, disk, base, changed } = await changedQcow2(engine, images);
    const job = engine.startRollback(disk.id, base.id);
    await progressed(engine, job.id);
    const ended = engine.waitJob(job.id);
    await engine.close();
    t.equal((await ended).state, 'cancelled', 'the shutdown cancelled the rollback');
    ({ engine } = await open(t, dataDir, images));
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'nothing is journaled after the restart');
    t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the image was not touched');
    await snapshot(engine, disk.id);
  });

  t.test('once the disk file was replaced, a rollback that stops keeps the journal, and so does a rerun', async (t) => {
    const { dataDir, images } = dirs(t);
    const { engine } = await open(t, dataDir, images);
    const { img, disk, base } = await changedQcow2(engine, images, '8M');
    const held = holdQcow2Writes(t, 2);
    const first = engine.startRollback(disk.id, base.id);
    await held.started();
    // The state a rename over the disk leaves: the disk's path names another file than the one journaled.
    copyFileSync(img, `${img}.copy`);
    renameSync(`${img}.copy`, img);
    engine.cancelJob(first.id);
    t.equal((await engine.waitJob(first.id)).state, 'cancelled');
    t.match(engine.getDisk(disk.id).pendingRollback, { snapshotId: base.id, jobId: first.id }, 'the disk file is not the one journaled: the journal stays');
    t.throws(() => engine.startSnapshot(disk.id), { code: 'RollbackIncomplete', message: /run the rollback again .*--abandon/ }, 'snapshots are refused, naming both ways out');
    const rerun = engine.startRollback(disk.id, base.id);
    await held.started();
    engine.cancelJob(rerun.id);
    t.equal((await engine.waitJob(rerun.id)).state, 'cancelled');
    t.match(engine.getDisk(disk.id).pendingRollback, { jobId: rerun.id }, 'a rerun keeps the first attempt\'s file: cancelled, its journal stays');
    await finished(engine, engine.startRollback(disk.id, base.id));
    t.equal(engine.getDisk(disk.id).pendingRollback, null, 'a rerun to the end clears it');
  });

  t.test('a qcow2 journal without the disk file (an older version wrote it) keeps the old behaviour', async (t) => {
    const { dataDir, images } = dirs(t);
    let { engine } = await open(t, dataDir, images);
    const { img, disk, base, changed } = await changedQcow2(engine, images, '8M');
    await engine.close();
    const catalog = Catalog.open(dataDir, BS);
    catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: base.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000aa' } }));
    await catalog.close();
    ({ engine } = await open(t, dataDir, images));
    t.match(engine.getDisk(disk.id).pendingRollback, { snapshotId: base.id, jobId: 'j-00000000000000aa' }, 'the start keeps it');
    t.throws(() => engine.startSnapshot(disk.id), { code: 'RollbackIncomplete' });
    const held = holdQcow2Writes(t, 1);
    const rerun = engine.startRollback(disk.id, base.id);
    await held.started();
    engine.cancelJob(rerun.id);
    t.equal((await engine.waitJob(rerun.id)).state, 'cancelled');
    t.match(engine.getDisk(disk.id).pendingRollback, { snapshotId: base.id }, 'a cancelled rerun keeps it: it cannot tell whether the rename happened');
    t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the image is untouched');
    const r = engine.abandonRollback(disk.id);
    t.equal(r.image, 'unknown', 'abandoning it says the state cannot be told');
    t.match(r.message, /unless the rollback's new image .* had already been renamed over/);
    await snapshot(engine, disk.id);
  });
});

t.test('abandonRollback', async (t) => {
  const { dataDir, images } = dirs(t);
  let { engine, logs } = await open(t, dataDir, images, { blockSize: BS });
  const img = makeImage(join(images, 'd.raw'), 256 * BS);
  for (let i = 0; i < 256; i++) fillBlock(img, i, BS, `d${i}`);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id, 'base');
  const other = await snapshot(engine, disk.id, 'other');

  t.throws(() => engine.abandonRollback(disk.id), { code: 'RollbackNotPending', message: /has no unfinished rollback to abandon/ }, 'nothing pending: refused');

  for (let i = 0; i < 256; i++) fillBlock(img, i, BS, `x${i}`);
  const running = engine.startRollback(disk.id, snap.id);
  t.throws(() => engine.abandonRollback(disk.id), { code: 'DiskBusy' }, 'a running rollback cannot be abandoned');
  engine.cancelJob(running.id);
  t.equal((await engine.waitJob(running.id)).state, 'cancelled');
  // What a daemon killed while a raw rollback wrote leaves: its journal, the image part written.
  const job = { id: 'j-00000000000000ab' };
  for (let i = 0; i < 100; i++) fillBlock(img, i, BS, `d${i}`);
  await engine.close();
  const catalog = Catalog.open(dataDir, BS);
  catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: snap.id, startedAt: new Date().toISOString(), jobId: job.id } }));
  await catalog.close();
  ({ engine, logs } = await open(t, dataDir, images, { blockSize: BS }));
  const image = await sha256File(img);

  t.throws(() => engine.abandonRollback(disk.id, other.id), { code: 'RollbackNotPending', message: new RegExp(`its unfinished rollback is to ${snap.id}`) },
    'a snapshot that is not the target is refused, naming the target');
  t.ok(engine.getDisk(disk.id).pendingRollback, 'and nothing changed');
  const r = engine.abandonRollback(disk.id, 'base');
  t.same(r.abandoned, { snapshotId: snap.id, startedAt: r.abandoned.startedAt, jobId: job.id }, 'the cleared journal is returned');
  t.equal(r.image, 'partial');
  t.match(r.message, /blocks the rollback had written hold base's content, the others what the disk held before/);
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'the journal is gone');
  t.equal(await sha256File(img), image, 'the image is left as the rollback left it');
  t.ok(logs.includes('unfinished rollback abandoned: the image keeps what it left, and the disk takes snapshots again'), 'logged');
  const after = await snapshot(engine, disk.id);
  t.equal(after.parentId, other.id, 'snapshots work again, on the head from before the rollback');
  t.throws(() => engine.abandonRollback(disk.id), { code: 'RollbackNotPending' }, 'a second abandon finds nothing');
  await engine.deleteSnapshot(snap.id);
});

t.test('a raw rollback cancelled before it writes clears its journal: the disk is as it was', async (t) => {
  const { dataDir, images } = dirs(t);
  const { engine, logs } = await open(t, dataDir, images, { blockSize: BS });
  const img = makeImage(join(images, 'c.raw'), 256 * BS);
  for (let i = 0; i < 256; i++) fillBlock(img, i, BS, `c${i}`);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id, 'base');
  for (let i = 0; i < 256; i++) fillBlock(img, i, BS, `now${i}`);
  const before = await sha256File(img);
  const job = engine.startRollback(disk.id, snap.id);
  engine.cancelJob(job.id);
  const done = await engine.waitJob(job.id);
  t.equal(done.state, 'cancelled');
  t.match(done.error?.message, /stopped before it wrote anything: the disk is as it was and takes snapshots as before/);
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'no journal is left');
  t.equal(await sha256File(img), before, 'the image is untouched');
  t.ok(logs.some((l) => /raw rollback cancelled before it wrote anything/.test(l)), 'logged');
  await snapshot(engine, disk.id);
});

/** A raw disk of 64 blocks snapshotted as `base`, every block changed since, and base's block 32 gone from the store. */
async function rawWithMissingBlock(engine: Engine, dataDir: string, images: string) {
  const img = makeImage(join(images, 'rot.raw'), 64 * BS);
  for (let i = 0; i < 64; i++) fillBlock(img, i, BS, `r${i}`);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id, 'base');
  for (let i = 0; i < 64; i++) fillBlock(img, i, BS, `changed${i}`);
  const digest = createHash('sha256').update(pattern('r32', BS)).digest('hex');
  unlinkSync(join(dataDir, 'blocks', digest.slice(0, 3), digest));
  return { img, disk, snap };
}

t.test('a raw rollback that needs a damaged block fails before it writes anything, and names the ways out', async (t) => {
  const { dataDir, images } = dirs(t);
  const { engine } = await open(t, dataDir, images, { blockSize: BS });
  const { img, disk, snap } = await rawWithMissingBlock(engine, dataDir, images);
  const before = await sha256File(img);
  const done = await engine.waitJob(engine.startRollback(disk.id, snap.id).id);
  t.equal(done.state, 'failed');
  t.equal(done.error?.code, 'BlockMissing');
  t.match(done.error?.message, /stopped before it wrote anything: the disk is as it was and takes snapshots as before/);
  t.match(done.error?.message, /store verify/);
  t.match(done.error?.message, /roll back to a snapshot that does not share it/);
  t.equal(await sha256File(img), before, 'not one block was written');
  t.equal(engine.getDisk(disk.id).pendingRollback, null, 'no journal is left');
  await snapshot(engine, disk.id);
});

t.test('a rerun of a raw rollback an earlier attempt left partly done keeps its journal when a block is damaged', async (t) => {
  const { dataDir, images } = dirs(t);
  let { engine } = await open(t, dataDir, images, { blockSize: BS });
  const { img, disk, snap } = await rawWithMissingBlock(engine, dataDir, images);
  for (let i = 0; i < 10; i++) fillBlock(img, i, BS, `r${i}`);
  await engine.close();
  const catalog = Catalog.open(dataDir, BS);
  catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: snap.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000ac' } }));
  await catalog.close();
  ({ engine } = await open(t, dataDir, images, { blockSize: BS }));
  const before = await sha256File(img);
  const done = await engine.waitJob(engine.startRollback(disk.id, snap.id).id);
  t.equal(done.error?.code, 'BlockMissing');
  t.match(done.error?.message, /stopped before it wrote anything, but an earlier rollback to base had left the image partly rolled back/);
  t.match(done.error?.message, /blocksnap rollback rot\.raw --abandon/);
  t.equal(await sha256File(img), before, 'this attempt wrote nothing');
  t.match(engine.getDisk(disk.id).pendingRollback, { snapshotId: snap.id, jobId: 'j-00000000000000ac' }, 'the earlier attempt\'s journal stays');
  t.throws(() => engine.startSnapshot(disk.id), { code: 'RollbackIncomplete' });
});
