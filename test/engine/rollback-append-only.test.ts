/**
 * An append-only file (chattr +a) can be opened for writing only to append, and neither it nor
 * any entry of an append-only directory can be renamed over, even by root; access(2) reports
 * none of it. A rollback bound to fail so must be refused before anything is written, and a
 * group rollback before any member starts.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, sha256File } from '../helpers/images';
import { haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import type { Test } from 'tap';

const BS = 64 * 1024;

/** Sets chattr +a on `path`; why it cannot, where the test filesystem does not take it. */
function setAppendOnly(path: string): string | null {
  const r = spawnSync('chattr', ['+a', path], { encoding: 'utf8' });
  if (r.error) return `chattr is not installed: ${r.error.message}`;
  return r.status === 0 ? null : `chattr +a cannot be set on the test filesystem: ${r.stderr.trim()}`;
}

/**
 * Runs `check` while `path` is append-only, cleared before this returns (the test's directory
 * could not be removed otherwise); a test that cannot set it is skipped, saying why.
 */
function whileAppendOnly(t: Test, path: string, check: () => void): boolean {
  const cannot = setAppendOnly(path);
  if (cannot !== null) {
    t.plan(0, cannot);
    return false;
  }
  try {
    check();
  } finally {
    spawnSync('chattr', ['-a', path]);
  }
  return true;
}

async function rawDisk(f: Awaited<ReturnType<typeof openEngine>>, name: string) {
  const path = makeImage(join(f.images, `${name}.raw`), 2 * BS);
  fillBlock(path, 0, BS, `${name}-0`);
  const disk = await f.engine.addDisk({ path, name });
  return { id: disk.id, path };
}

t.test('group rollback starts nothing when one member image is append-only', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const [a, b] = [await rawDisk(f, 'a'), await rawDisk(f, 'b')];
  const g = await f.engine.groups.create({ disks: [a.id, b.id] }).done;
  fillBlock(a.path, 0, BS, 'a-changed');
  fillBlock(b.path, 0, BS, 'b-changed');
  const changedA = await sha256File(a.path);
  const jobsBefore = f.engine.listJobs().length;
  if (!whileAppendOnly(t, b.path, () => {
    t.throws(() => f.engine.groups.rollback(g.id), { code: 'PermissionDenied', message: /append-only/ });
  })) return;
  t.equal(f.engine.listJobs().length, jobsBefore, 'no member rollback started');
  t.equal(await sha256File(a.path), changedA, 'the other disk was not rolled back');
});

t.test('a raw rollback of an append-only image is refused before it is journaled', async (t) => {
  const f = await openEngine(t, { blockSize: BS });
  const a = await rawDisk(f, 'a');
  const snap = await snapshot(f.engine, a.id);
  fillBlock(a.path, 0, BS, 'a-changed');
  if (!whileAppendOnly(t, a.path, () => {
    t.throws(() => f.engine.startRollback(a.id, snap.id), { code: 'PermissionDenied', message: /chattr -a/ });
  })) return;
  t.equal(f.engine.getDisk(a.id).pendingRollback ?? null, null, 'no rollback journaled');
});

const noQemu = haveQemu();

t.test('a qcow2 rollback over an append-only image is refused before its new image is written', { skip: noQemu }, async (t) => {
  const f = await openEngine(t);
  const img = join(f.images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '4M');
  const disk = await f.engine.addDisk({ path: img });
  const snap = await snapshot(f.engine, disk.id);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 1M');
  const before = readFileSync(img);
  if (!whileAppendOnly(t, img, () => {
    t.throws(() => f.engine.startRollback(disk.id, snap.id), { code: 'PermissionDenied', message: /append-only/ });
  })) return;
  t.same(readFileSync(img), before, 'the image is as it was');
});

t.test('a qcow2 rollback in an append-only directory is refused before its new image is written', { skip: noQemu }, async (t) => {
  const f = await openEngine(t);
  const dir = join(f.images, 'vm');
  mkdirSync(dir);
  const img = join(dir, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '4M');
  const disk = await f.engine.addDisk({ path: img });
  const snap = await snapshot(f.engine, disk.id);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 1M');
  const ino = statSync(img).ino;
  if (!whileAppendOnly(t, dir, () => {
    t.throws(() => f.engine.startRollback(disk.id, snap.id), { code: 'PermissionDenied', message: /directory .* append-only/ });
  })) return;
  t.equal(statSync(img).ino, ino, 'the disk file was not replaced');
});
