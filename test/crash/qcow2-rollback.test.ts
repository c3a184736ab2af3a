/**
 * A qcow2 rollback writes a whole new image beside the disk and renames it over the disk file.
 * The daemon SIGKILLed while it writes must leave the old image intact and the rollback
 * journaled, and nothing of the half-written image (as large as the disk) beside it: it has no
 * name until complete, and where the filesystem cannot do that (no O_TMPFILE) the next start
 * removes it from under its temp name, since a disk removed instead of rolled back again would
 * otherwise leave it forever.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Disk, Job } from '../../src/engine/types';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { DaemonProcess, connect, makeLayout, sleep } from './daemon-process';

const MiB = 1024 * 1024;

/**
 * A 512 MiB qcow2 disk with a snapshot, changed since, and a daemon frozen (SIGSTOP) while it
 * writes the new image of a rollback to that snapshot, then killed.
 */
async function killedMidRollback(t: Test, env: NodeJS.ProcessEnv, frozen: (paths: { imageRoot: string; temp: string }) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'bsq-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir);
  const img = join(layout.imageRoot, 'vm.qcow2');
  const temp = join(layout.imageRoot, '.vm.qcow2.blocksnap-rollback');
  // Large enough that the new image is still being written when the daemon is frozen.
  qemuImg('create', '-f', 'qcow2', img, '512M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 512M');
  let d = await DaemonProcess.start(layout, [], env);
  t.teardown(() => d.kill());
  let c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'vm' });
  const base = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true });
  t.equal(base.state, 'succeeded');
  qemuIo(img, 'qcow2', 'write -P 0x42 0 512M');
  const changed = join(dir, 'changed.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, changed);

  const job = await c.call<Job>('rollback', { disk: 'vm', snapshot: 'base', wait: false });
  let now = job;
  for (let i = 0; i < 20_000 && now.state === 'running' && now.doneBytes < 64 * MiB; i++) {
    await sleep(1);
    now = await c.call<Job>('job.show', { job: job.id });
  }
  t.equal(now.state, 'running', 'the rollback was writing its new image');
  t.ok(now.doneBytes < now.totalBytes, 'and far from done');
  process.kill(d.pid, 'SIGSTOP');
  frozen({ imageRoot: layout.imageRoot, temp });
  await d.kill();
  c.close();
  t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the disk file is the old image, whole');

  d = await DaemonProcess.start(layout, [], env);
  c = await connect(layout);
  const disk = (await c.call<Disk[]>('disk.list')).find((x) => x.name === 'vm')!;
  t.ok(disk.pendingRollback, 'the rollback is still journaled');
  t.notOk(existsSync(temp), 'nothing of the half-written new image is left');
  t.same(readdirSync(layout.imageRoot), ['vm.qcow2']);
  t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'and the disk file is left alone');
  c.close();
  return d;
}

t.test('a qcow2 rollback killed mid-write leaves the old image and no trace of the new one', { skip: haveQemu() }, async (t) => {
  await killedMidRollback(t, {}, ({ imageRoot, temp }) => {
    t.notOk(existsSync(temp), 'the new image being written has no temp name');
    t.same(readdirSync(imageRoot), ['vm.qcow2'], 'nor any other');
  });
});

t.test('without O_TMPFILE, a qcow2 rollback killed mid-write leaves its temp file, and the next start removes it', { skip: haveQemu() }, async (t) => {
  const d = await killedMidRollback(t, { BLOCKSNAP_NO_TMPFILE: '1' }, ({ temp }) => {
    t.ok(existsSync(temp) && statSync(temp).size > 8 * MiB, 'the half-written new image is under its temp name');
  });
  await d.waitForLog(/recovered from an unclean stop/);
  t.match(d.stderr(), /"rollbackTempFiles":1/);
});
