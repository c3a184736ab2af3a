/**
 * A snapshot of an image that a QEMU process holds for reading only (the backing file of a running
 * VM's overlay) carries the warning ImageHeldReadOnly: the VM writes its overlay, which the
 * snapshot does not hold, though nothing wrote the file it read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { probeImageLocks } from '../../src/native';
import { openEngine, snapshot } from '../helpers/engine';
import { haveQemu, holdWithNbd, qemuImg, qemuIo } from '../helpers/qemu';

const skip = haveQemu();

/** Serves the qcow2 `overlay` with qemu-nbd, as a running VM holds it, until the test ends; returns the export's NBD URI. */
async function runOverlay(t: Test, overlay: string): Promise<string> {
  // A Unix socket path must stay under 108 bytes: not in the test's deep fixture directory.
  const sockets = mkdtempSync(join(tmpdir(), 'bs-nbd-'));
  t.teardown(() => rmSync(sockets, { recursive: true, force: true }));
  const nbd = await holdWithNbd(overlay, 'qcow2', join(sockets, 'nbd.sock'));
  t.teardown(() => nbd.stop());
  return `nbd+unix:///?socket=${join(sockets, 'nbd.sock')}`;
}

t.test('a snapshot of the backing file under a running overlay warns that the VM writes elsewhere', { skip }, async (t) => {
  const { engine, images } = await openEngine(t);
  const base = join(images, 'lv-base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '8M');
  await engine.addDisk({ path: base, name: 'lv' });
  const overlay = join(images, 'lv.snap1.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'lv-base.qcow2', '-F', 'qcow2', overlay);
  qemuIo(await runOverlay(t, overlay), 'raw', 'write -P 0x5f 0 1M');
  t.notOk(probeImageLocks(base).held.includes('write'), 'the base is held, but not for writing');

  const s = await snapshot(engine, 'lv', 'a3');
  t.equal(s.consistency, 'offline', 'nothing wrote the file it read');
  t.match(s.warnings, [{
    code: 'ImageHeldReadOnly',
    message: new RegExp(`^a QEMU process had ${base} open for reading only \\(it holds consistent read and does not share write.*the backing file of a running VM's overlay.*blocksnap disk relocate lv PATH$`),
  }]);
  t.same(engine.getSnapshot('a3').warnings, s.warnings, 'kept with the snapshot');
});

t.test('a snapshot of a golden image under a running registered clone names the clone, not relocate', { skip }, async (t) => {
  const { engine, images } = await openEngine(t);
  const gold = join(images, 'gold.raw');
  qemuImg('create', '-q', '-f', 'raw', gold, '8M');
  await engine.addDisk({ path: gold, name: 'gold' });
  const clone = join(images, 'vm1.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'gold.raw', '-F', 'raw', clone);
  await engine.addDisk({ path: clone, name: 'vm1' });
  await runOverlay(t, clone);

  const s = await snapshot(engine, 'gold', 'g2');
  t.match(s.warnings, [{
    code: 'ImageHeldReadOnly',
    message: new RegExp(`^a QEMU process had ${gold} open for reading only .*\\. It is the backing file of registered disk vm1, whose own snapshots hold what their VMs write$`),
  }], 'no advice to relocate the disk onto the clone');
});

t.test('a snapshot of an image nothing holds has no warning', { skip }, async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'free.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '8M');
  await engine.addDisk({ path: img, name: 'free' });
  t.same((await snapshot(engine, 'free')).warnings, []);
});
