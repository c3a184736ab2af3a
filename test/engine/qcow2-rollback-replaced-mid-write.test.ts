/**
 * The real qcow2 writer racing a rename over the disk's path: the rollback's native writer has
 * checked the path and holds the image's locks, and is reading the snapshot's blocks from the
 * store, when another image is renamed over the path (`mv other.qcow2 vm.qcow2`). Its own check
 * before its rename refuses (ImageReplaced): the file renamed there is left exactly as it was,
 * the new image it wrote is gone, the journal stays, and the store is whole. The race is made
 * deterministic by holding the writer's open of a store block (fanotify, root only: skipped,
 * saying so, without it).
 */
import { createHash } from 'node:crypto';
import { readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { VerifyResult } from '../../src/engine/types';
import type { writeQcow2 } from '../../src/native';
import { finished } from '../helpers/engine';
import { sha256File } from '../helpers/images';
import { gateFirstOpen } from '../helpers/open-gate';
import { qcow2ChangedSinceBase } from '../helpers/qcow2-changed';
import { compare, haveQemu } from '../helpers/qemu';
import { blockPath } from '../helpers/store-damage';

/** The engine's default block size, which qcow2ChangedSinceBase's engine has. */
const BS = 4 * 1024 * 1024;

/**
 * A qcow2 disk snapshotted as `base` (every block 0x41) and then changed, and a rollback to
 * `base` during which a copy of the changed image is renamed over the disk's path, while the
 * writer waits to open a block of `base` in the store. Null when the gate cannot be had here.
 */
async function replacedMidWrite(t: Test) {
  const { engine, dataDir, img, disk, base, wanted, other } = await qcow2ChangedSinceBase(t);
  const otherSha = await sha256File(other);

  const block = blockPath(dataDir, createHash('sha256').update(Buffer.alloc(BS, 0x41)).digest('hex'));
  const gate = await gateFirstOpen(t, block);
  if ('skip' in gate) {
    t.pass('nothing to check without the gate', { skip: gate.skip });
    return null;
  }
  const native = require('../../src/native') as { writeQcow2: typeof writeQcow2 };
  const real = native.writeQcow2;
  let writing = false;
  native.writeQcow2 = (o) => {
    writing = true;
    return real(o);
  };
  t.teardown(() => { native.writeQcow2 = real; });
  const rollback = engine.startRollback(disk.id, base.id);
  const opener = await gate.held;
  const heldInWriter = writing;
  renameSync(other, img);
  gate.release();
  const job = await engine.waitJob(rollback.id);
  native.writeQcow2 = real;
  return { engine, img, disk, base, job, wanted, otherSha, opener, heldInWriter };
}

t.test('qcow2', { skip: haveQemu() }, async (t) => {
  t.test('a qcow2 rollback whose image is renamed over while the writer reads fails with ImageReplaced', async (t) => {
    const f = await replacedMidWrite(t);
    if (f === null) return;
    t.ok(f.heldInWriter && f.opener === process.pid, 'the rename came while the native writer waited to read a store block');
    t.equal(f.job.state, 'failed', 'no success is recorded');
    t.equal(f.job.error?.code, 'ImageReplaced', 'the writer refused its rename');
    t.match(f.job.error?.message, /vm\.qcow2 is no longer the image this rollback locked .*refusing to replace it\. The rollback of disk vm to base did not replace the file now at its path/);
  });

  t.test('the image renamed over the path mid-write is left as it was, and the new image is gone', async (t) => {
    const f = await replacedMidWrite(t);
    if (f === null) return;
    t.equal(await sha256File(f.img), f.otherSha, 'nothing was written to the file now at the path');
    t.same(readdirSync(join(f.img, '..')), ['vm.qcow2'], 'no temporary image is left beside it');
  });

  t.test('after a qcow2 image renamed over mid-write the journal stays and the store is whole', async (t) => {
    const f = await replacedMidWrite(t);
    if (f === null) return;
    const d = f.engine.getDisk(f.disk.id);
    t.match(d.pendingRollback, { snapshotId: f.base.id, jobId: f.job.id }, 'the rollback is journaled as unfinished');
    t.throws(() => f.engine.startSnapshot(f.disk.id), { code: 'RollbackIncomplete' }, 'so snapshots are refused');
    const verify = await finished(f.engine, f.engine.startVerify());
    t.same((verify.result as VerifyResult).problems, [], 'store verify is clean');
    t.equal(f.engine.getSnapshot(f.base.id).status, 'available', 'the target snapshot is as it was');
  });

  t.test('a rerun after a qcow2 image renamed over mid-write rolls back the file now at the path', async (t) => {
    const f = await replacedMidWrite(t);
    if (f === null) return;
    t.equal((await finished(f.engine, f.engine.startRollback(f.disk.id, f.base.id))).state, 'succeeded', 'the rerun succeeds');
    t.equal(compare(f.img, 'qcow2', f.wanted, 'raw').status, 0, 'the image holds the snapshot');
    t.equal(f.engine.getDisk(f.disk.id).pendingRollback, null, 'the journal is cleared');
  });
});
