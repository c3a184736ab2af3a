/**
 * qcow2 disks through the real daemon and CLI: the walkthrough an operator runs, damaged images
 * refused with a code while the daemon keeps serving, and rollback refused while qemu-nbd holds
 * the image (allowed with --force).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { check, compare, haveQemu, holdWithNbd, qemuImg, qemuIo } from '../helpers/qemu';
import { freshDaemon, tempDir } from './fixtures/harness';

const missing = haveQemu();
if (missing) t.plan(0, missing);

t.test('disk add, snapshot, clone qcow2, rollback through the CLI', async (t) => {
  const d = await freshDaemon(t);
  const img = join(d.imageRoot, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '16M');
  qemuIo(img, 'qcow2', 'write -P 0x61 0 5M', 'write -z 1M 1M');

  const disk = await d.json('disk', 'add', 'vm.qcow2', '--name', 'vm');
  t.match(disk, { format: 'qcow2', sizeBytes: 16 << 20 });
  const snap = await d.json('snapshot', 'create', 'vm', '--name', 'base');
  t.equal(snap.consistency, 'offline');
  const shown = await d.cli('snapshot', 'show', 'base');
  t.match(shown.stdout, /consistency:\s+offline/, 'the CLI shows the consistency');

  const clone = await d.json('clone', 'base', 'copy.qcow2', '--format', 'qcow2');
  t.equal(clone.format, 'qcow2');
  t.equal(check(clone.path).status, 0, 'qemu-img check accepts the clone');
  t.equal(compare(img, 'qcow2', clone.path, 'qcow2').status, 0, 'identical to the disk');

  qemuIo(img, 'qcow2', 'write -P 0x62 0 16M');
  await d.json('rollback', 'vm', 'base');
  t.equal(check(img).status, 0);
  t.equal(compare(img, 'qcow2', clone.path, 'qcow2').status, 0, 'rolled back');
});

t.test('damaged qcow2 headers are refused with a code while the daemon keeps serving', async (t) => {
  const d = await freshDaemon(t);
  const good = join(d.imageRoot, 'good.qcow2');
  qemuImg('create', '-f', 'qcow2', good, '8M');
  qemuIo(good, 'qcow2', 'write -P 1 0 1M');
  const bytes = readFileSync(good);

  const truncated = bytes.subarray(0, 60);
  const zeroFilled = Buffer.from(bytes);
  zeroFilled.fill(0, 4, 104);                       // magic kept, every field zero
  const flippedL1 = Buffer.from(bytes);
  flippedL1[40] = flippedL1[40]! ^ 0x40;             // L1 table offset bit 62: far past the end
  const flippedBits = Buffer.from(bytes);
  flippedBits[23] = flippedBits[23]! ^ 0x20;         // cluster bits 16 → 48
  const flippedVersion = Buffer.from(bytes);
  flippedVersion[7] = flippedVersion[7]! ^ 0x04;     // version 3 → 7
  const allZero = Buffer.alloc(bytes.length);

  const cases: Array<{ name: string; data: Buffer; code: string; args?: string[] }> = [
    { name: 'truncated.qcow2', data: truncated, code: 'ImageCorrupt' },
    { name: 'zero-fields.qcow2', data: zeroFilled, code: 'ImageCorrupt' },
    { name: 'flipped-l1.qcow2', data: flippedL1, code: 'ImageCorrupt' },
    { name: 'flipped-bits.qcow2', data: flippedBits, code: 'ImageCorrupt' },
    { name: 'flipped-version.qcow2', data: flippedVersion, code: 'UnsupportedFormat' },
    { name: 'all-zero.qcow2', data: allZero, code: 'NotAnImage', args: ['--format', 'qcow2'] },
  ];
  for (const c of cases) {
    writeFileSync(join(d.imageRoot, c.name), c.data);
    const r = await d.cli('disk', 'add', c.name, ...(c.args ?? []), '--json');
    t.equal(r.code, 1, `${c.name}: exit status 1`);
    t.equal(r.json().error.code, c.code, `${c.name}: ${r.json().error.message}`);
  }
  t.same(await d.json('disk', 'list'), [], 'nothing was registered');
  t.match(await d.json('disk', 'add', 'good.qcow2'), { format: 'qcow2' }, 'the daemon still serves');
});

t.test('rollback is refused while qemu-nbd holds the image, and allowed with --force', async (t) => {
  const d = await freshDaemon(t);
  const img = join(d.imageRoot, 'held.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '8M');
  qemuIo(img, 'qcow2', 'write -P 7 0 2M');
  await d.json('disk', 'add', 'held.qcow2', '--name', 'held');
  await d.json('snapshot', 'create', 'held', '--name', 'base');
  const copy = await d.json('clone', 'base', 'copy.raw');
  qemuIo(img, 'qcow2', 'write -P 8 0 1M');

  const nbd = await holdWithNbd(img, 'qcow2', join(tempDir(t, 'bsn-'), 'nbd.sock'));
  try {
    const live = await d.json('snapshot', 'create', 'held', '--name', 'live');
    t.equal(live.consistency, 'crash', 'a snapshot of a held image says it is crash-consistent');
    const listed = await d.cli('snapshot', 'list', 'held');
    t.match(listed.stdout, /live\s.*crash/, 'the table shows it');

    const refused = await d.cli('rollback', 'held', 'base', '--json');
    t.equal(refused.code, 1);
    t.equal(refused.json().error.code, 'DiskInUse');
    t.match(refused.json().error.message, /holds .*write/, 'the message names what was found');
    const plain = await d.cli('rollback', 'held', 'base');
    t.match(plain.stderr, /\[DiskInUse\]/);

    const forced = await d.json('rollback', 'held', 'base', '--force');
    t.equal(forced.state, 'succeeded');
  } finally {
    await nbd.stop();
  }
  t.equal(compare(img, 'qcow2', copy.path, 'raw').status, 0, 'the forced rollback restored the snapshot');
});
