/**
 * A qcow2 rollback writes a whole new image beside the disk and renames it over the disk file.
 * The daemon SIGKILLed while it writes must leave the old image intact and the rollback
 * journaled, and the next start must not keep the half-written image (as large as the disk)
 * beside it: a disk removed instead of rolled back again would otherwise leave it forever.
 */
import t from 'tap';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Disk, Job } from '../../src/engine/types';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { DaemonProcess, connect, makeLayout, sleep } from './daemon-process';

const MiB = 1024 * 1024;

t.test('a qcow2 rollback killed mid-write leaves the old image, and the next start removes its temp file', { skip: haveQemu() }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsq-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir);
  const img = join(layout.imageRoot, 'vm.qcow2');
  const temp = join(layout.imageRoot, '.vm.qcow2.blocksnap-rollback');
  // Large enough that the new image is still being written when the kill lands.
  qemuImg('create', '-f', 'qcow2', img, '512M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 512M');
  let d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  let c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'vm' });
  const base = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true });
  t.equal(base.state, 'succeeded');
  qemuIo(img, 'qcow2', 'write -P 0x42 0 512M');
  const changed = join(dir, 'changed.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, changed);

  await c.call<Job>('rollback', { disk: 'vm', snapshot: 'base', wait: false });
  for (let i = 0; i < 4000 && !(existsSync(temp) && statSync(temp).size > 8 * MiB); i++) await sleep(2);
  await d.kill();
  c.close();
  // Still under its temp name: the kill landed before the rename, while the new image was written.
  t.ok(existsSync(temp), 'the kill left the half-written new image');
  t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the disk file is the old image, whole');

  d = await DaemonProcess.start(layout);
  c = await connect(layout);
  const disk = (await c.call<Disk[]>('disk.list')).find((x) => x.name === 'vm')!;
  t.ok(disk.pendingRollback, 'the rollback is still journaled');
  t.notOk(existsSync(temp), 'the start removed the half-written new image');
  t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'and left the disk file alone');
  c.close();
});
