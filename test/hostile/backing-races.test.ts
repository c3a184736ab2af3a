/**
 * A user who can write inside an image root races a snapshot of a qcow2 overlay: after the engine
 * checked the backing chain against the roots and before the scan opens it, the backing file's
 * directory is swapped for a symlink to a directory outside the roots, or the overlay's header
 * is made to name a backing file outside them (qemu-img rebase -u). The outside base holds
 * another tenant's disk; the daemon reads with its own rights, and a snapshot of it could be
 * cloned or exported by the user. The snapshot must fail and nothing from outside be stored.
 */
import { existsSync, mkdirSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { inspectImage } from '../../src/engine/image-access';
import * as native from '../../src/native/index';
import { blockPath, BLOCKS_DIR } from '../../src/store/format';
import { openEngine, snapshot, type Fixture } from '../helpers/engine';
import { haveQemu, qemuImg, qemuIo } from '../helpers/qemu';

const BLOCK = 64 * 1024;
const SIZE = 1024 * 1024;

/** Swaps `dir` for a symlink to `outside`; the real directory goes on under `dir.real`. */
function swapForSymlink(dir: string, outside: string): string {
  renameSync(dir, `${dir}.real`);
  symlinkSync(outside, dir);
  return `${dir}.real`;
}

/** A base image filled with `pattern`, one byte value per 64 KiB block so that every block differs. */
function makeBase(path: string, pattern: number): void {
  qemuImg('create', '-q', '-f', 'qcow2', path, String(SIZE));
  qemuIo(path, 'qcow2', ...Array.from({ length: SIZE / BLOCK }, (_, i) => `write -P ${(pattern + i) & 0xff} ${i * BLOCK} ${BLOCK}`));
}

/** The digests of the blocks the outside base reads as (what must never reach the store). */
function blocksOf(pattern: number): Buffer[] {
  return Array.from({ length: SIZE / BLOCK }, (_, i) => native.hashBuffer(Buffer.alloc(BLOCK, (pattern + i) & 0xff)));
}

interface Setup extends Fixture { top: string; baseDir: string; outside: string; outsideBase: string }

/**
 * Disk `vm`: an overlay in `images/vms` over `images/bases/base.qcow2` (named `backing` in its
 * header), snapshotted once. Beside the root, `outside/base.qcow2`, a base of different content.
 */
async function overlayWithOutsideBase(t: Test, backing: (baseDir: string) => string): Promise<Setup> {
  const f = await openEngine(t, { blockSize: BLOCK });
  const baseDir = join(f.images, 'bases');
  const vms = join(f.images, 'vms');
  mkdirSync(baseDir);
  mkdirSync(vms);
  makeBase(join(baseDir, 'base.qcow2'), 0x10);
  const top = join(vms, 'vm.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', backing(baseDir), '-F', 'qcow2', top);
  qemuIo(top, 'qcow2', `write -P 0xee 0 ${BLOCK}`);
  const outside = join(f.images, '..', 'outside');
  mkdirSync(outside);
  const outsideBase = join(outside, 'base.qcow2');
  makeBase(outsideBase, 0x80);
  await f.engine.addDisk({ path: top, name: 'vm' });
  await snapshot(f.engine, 'vm');
  return { ...f, top, baseDir, outside, outsideBase };
}

/**
 * Runs `race` once, the moment the engine hands the snapshot's scan to the native code: after
 * the chain was checked against the roots, before any backing file is opened.
 */
function beforeScan(t: Test, race: () => void): { ran: () => boolean } {
  const original = native.scanImage;
  let ran = false;
  (native as { scanImage: typeof native.scanImage }).scanImage = (o) => {
    if (!ran) {
      ran = true;
      race();
    }
    return original(o);
  };
  t.teardown(() => { (native as { scanImage: typeof native.scanImage }).scanImage = original; });
  return { ran: () => ran };
}

/** The snapshot job's end, and how many blocks of the outside base are in the store. */
async function snapshotAfterRace(f: Setup): Promise<{ job: Awaited<ReturnType<Fixture['engine']['waitJob']>>; outsideBlocks: number }> {
  const job = await f.engine.waitJob(f.engine.startSnapshot('vm', {}).id);
  const outsideBlocks = blocksOf(0x80).filter((d) => existsSync(blockPath(join(f.dataDir, BLOCKS_DIR), d.toString('hex')))).length;
  return { job, outsideBlocks };
}

const skip = haveQemu();

t.test('a snapshot whose backing file directory is swapped for a symlink after the check stores nothing from outside the roots', { skip }, async (t) => {
  for (const naming of ['absolute', 'relative'] as const) {
    await t.test(`${naming} backing name`, async (t) => {
      const f = await overlayWithOutsideBase(t, (baseDir) => naming === 'absolute' ? join(baseDir, 'base.qcow2') : '../bases/base.qcow2');
      const hook = beforeScan(t, () => swapForSymlink(f.baseDir, f.outside));
      const { job, outsideBlocks } = await snapshotAfterRace(f);
      t.ok(hook.ran(), 'the directory was swapped between the check and the scan');
      t.match(job, { state: 'failed', error: { code: 'NotAnImage', message: /symlink was swapped/ } });
      t.equal(outsideBlocks, 0, 'no block of the outside base was stored');
      t.same(f.engine.listSnapshots().filter((s) => s.status === 'available').length, 1, 'only the first snapshot is available');
    });
  }
});

t.test('a snapshot whose overlay is rebased onto a file outside the roots after the check stores nothing from outside the roots', { skip }, async (t) => {
  const f = await overlayWithOutsideBase(t, (baseDir) => join(baseDir, 'base.qcow2'));
  const hook = beforeScan(t, () => qemuImg('rebase', '-u', '-b', f.outsideBase, '-F', 'qcow2', f.top));
  const { job, outsideBlocks } = await snapshotAfterRace(f);
  t.ok(hook.ran(), 'the header was rewritten between the check and the scan');
  t.match(job, { state: 'failed', error: { code: 'NotAnImage', message: /backing file of .* changed after it was checked/ } });
  t.equal(outsideBlocks, 0, 'no block of the outside base was stored');
  t.same(f.engine.listSnapshots().filter((s) => s.status === 'available').length, 1, 'only the first snapshot is available');
  // Checked now, the same chain is refused before anything is read.
  t.match(await f.engine.waitJob(f.engine.startSnapshot('vm', {}).id), { state: 'failed', error: { code: 'PathNotAllowed' } });
});

t.test('a snapshot whose backing name is a symlink repointed outside the roots after the check stores nothing from outside the roots', { skip }, async (t) => {
  // The backing name itself may be a symlink (QEMU follows it); the engine checked where it led.
  const f = await overlayWithOutsideBase(t, (baseDir) => {
    symlinkSync(join(baseDir, 'base.qcow2'), join(baseDir, 'current.qcow2'));
    return join(baseDir, 'current.qcow2');
  });
  const hook = beforeScan(t, () => {
    renameSync(join(f.baseDir, 'current.qcow2'), join(f.baseDir, 'old.qcow2'));
    symlinkSync(f.outsideBase, join(f.baseDir, 'current.qcow2'));
  });
  const { job, outsideBlocks } = await snapshotAfterRace(f);
  t.ok(hook.ran());
  t.match(job, { state: 'failed', error: { code: 'NotAnImage', message: /changed after it was checked/ } });
  t.equal(outsideBlocks, 0, 'no block of the outside base was stored');
});

t.test('an overlay left alone is snapshotted through its checked chain, symlinked backing name and all', { skip }, async (t) => {
  const f = await overlayWithOutsideBase(t, (baseDir) => {
    symlinkSync(join(baseDir, 'base.qcow2'), join(baseDir, 'current.qcow2'));
    return '../bases/current.qcow2';
  });
  t.match(f.engine.listSnapshots(), [{ status: 'available' }]);
  const s = await snapshot(f.engine, 'vm');
  t.equal(s.status, 'available');
  const inside = blocksOf(0x10).filter((d) => existsSync(blockPath(join(f.dataDir, BLOCKS_DIR), d.toString('hex')))).length;
  t.equal(inside, SIZE / BLOCK - 1, 'every block of the base the overlay does not cover was read from the checked base');
});

t.test('the header of a qcow2 image is never read through a directory swapped for a symlink after the check', { skip }, async (t) => {
  // qcow2Header runs at disk add, before every snapshot and at rollback, and its answer (virtual
  // size, backing names) or its error would describe the file outside.
  const root = t.testdir();
  const vms = join(root, 'images', 'vms');
  const outside = join(root, 'outside');
  mkdirSync(vms, { recursive: true });
  mkdirSync(outside);
  qemuImg('create', '-q', '-f', 'qcow2', join(vms, 'disk.qcow2'), '1M');
  qemuImg('create', '-q', '-f', 'qcow2', join(outside, 'disk.qcow2'), '7M');
  const checked = join(vms, 'disk.qcow2');
  t.equal(native.qcow2Header(checked).sizeBytes, SIZE);
  swapForSymlink(vms, outside);
  t.throws(() => native.qcow2Header(checked), { code: 'NotAnImage', message: /symlink was swapped/ }, 'the outside image is not read');
  t.throws(() => inspectImage(checked, 'qcow2', [join(root, 'images')]), { code: 'NotAnImage' });
});
