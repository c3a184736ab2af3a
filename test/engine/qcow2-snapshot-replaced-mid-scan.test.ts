/**
 * A qcow2 snapshot whose image is renamed over (`mv other.qcow2 vm.qcow2`) once the native scan
 * has opened it reads the file it opened to the end: the snapshot holds that file's content
 * exactly, says it is only crash-consistent (the path names another file than the one stamped
 * before the scan), and the next snapshot reads the file now at the path. The race is made
 * deterministic by holding the scan's open of the image (fanotify, root only: skipped, saying
 * so, without it).
 */
import { readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Snapshot, VerifyResult } from '../../src/engine/types';
import type { scanImage } from '../../src/native';
import { finished, snapshot } from '../helpers/engine';
import { sha256File } from '../helpers/images';
import { gateFirstOpen } from '../helpers/open-gate';
import { qcow2ChangedSinceBase } from '../helpers/qcow2-changed';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';

/**
 * qcow2ChangedSinceBase, `other.qcow2` then written all 0x43, and a snapshot `mid` during which
 * it is renamed over the disk's path while the scan's open of the image waits. The content of
 * both files as raw beside the image root. Null when the open cannot be held here.
 */
async function replacedMidScan(t: Test) {
  const f = await qcow2ChangedSinceBase(t);
  qemuIo(f.other, 'qcow2', 'write -P 0x43 0 8M');
  const opened = join(f.images, '..', 'opened.raw');
  const renamedIn = join(f.images, '..', 'renamed-in.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', f.img, opened);
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', f.other, renamedIn);
  const otherSha = await sha256File(f.other);

  // Armed as the engine hands the scan to the native code: the engine's own opens of the image
  // before (its header, its locks) go on, and the next open is the scan's.
  const native = require('../../src/native') as { scanImage: typeof scanImage };
  const real = native.scanImage;
  let skip: string | null = null;
  let opener = 0;
  native.scanImage = async (o) => {
    native.scanImage = real;
    const gate = await gateFirstOpen(t, f.img);
    if ('skip' in gate) {
      skip = gate.skip;
      return real(o);
    }
    const scan = real(o);
    opener = await gate.held;
    renameSync(f.other, f.img);
    gate.release();
    return scan;
  };
  t.teardown(() => { native.scanImage = real; });
  const job = await f.engine.waitJob(f.engine.startSnapshot(f.disk.id, { name: 'mid' }).id);
  native.scanImage = real;
  if (skip !== null) {
    t.pass('nothing to check without the gate', { skip });
    return null;
  }
  return { ...f, job, opened, renamedIn, otherSha, opener };
}

t.test('qcow2', { skip: haveQemu() }, async (t) => {
  t.test('a qcow2 snapshot whose image is renamed over once the scan opened it holds the file it opened, crash-consistent', async (t) => {
    const f = await replacedMidScan(t);
    if (f === null) return;
    t.equal(f.opener, process.pid, 'the rename came while the scan waited to open the image');
    t.equal(f.job.state, 'succeeded', f.job.error?.message ?? 'the snapshot completes');
    const snap = f.job.result as Snapshot;
    t.equal(snap.consistency, 'crash', 'and says it is crash-consistent');
    const clone = join(f.images, 'mid.raw');
    await finished(f.engine, f.engine.startClone('mid', clone, { format: 'raw' }));
    t.equal(compare(clone, 'raw', f.opened, 'raw').status, 0, 'it holds the content of the file the scan opened');
  });

  t.test('the image renamed over the path during a snapshot is left as it was, and the next snapshot reads it', async (t) => {
    const f = await replacedMidScan(t);
    if (f === null) return;
    t.equal(await sha256File(f.img), f.otherSha, 'the snapshot wrote nothing to the file now at the path');
    t.same(readdirSync(f.images).sort(), ['vm.qcow2'], 'and nothing beside it');
    const next = await snapshot(f.engine, 'vm', 'next');
    t.equal(next.consistency, 'offline', 'the next snapshot, with nothing written, is offline-consistent');
    const clone = join(f.images, 'next.raw');
    await finished(f.engine, f.engine.startClone('next', clone, { format: 'raw' }));
    t.equal(compare(clone, 'raw', f.renamedIn, 'raw').status, 0, 'and holds the file now at the path');
    const verify = await finished(f.engine, f.engine.startVerify());
    t.same((verify.result as VerifyResult).problems, [], 'store verify is clean');
  });
});
