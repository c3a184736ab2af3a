/**
 * Backing names QEMU does not read as a path beside the image. A colon before the first '/' makes
 * the name "protocol:rest" (QEMU's path_has_protocol): `file:/abs` is the file /abs, a relative
 * `file:` name is opened from QEMU's own working directory, and any other protocol is no file.
 * A snapshot must hold what the VM reads through such a name, or be refused; a symlink loop as
 * the name is refused as the loop it is.
 */
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Job } from '../../src/engine/types';
import { finished, openEngine, refusal, snapshot } from '../helpers/engine';
import { haveQemu, qemuImg, qemuIo } from '../helpers/qemu';

const BS = 64 * 1024;
const MiB = 1024 * 1024;
const skip = haveQemu();

/** A 1 MiB qcow2 overlay at `path` whose header names `backing` as raw, as `qemu-img rebase -u` writes it. */
function overlay(path: string, backing: string): string {
  qemuImg('create', '-q', '-f', 'qcow2', path, '1M');
  qemuImg('rebase', '-q', '-u', '-b', backing, '-F', 'raw', path);
  return path;
}

t.test('an absolute file: backing name is read, snapshotted and rolled back as the file QEMU opens', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const base = join(images, 'x.raw');
  writeFileSync(base, Buffer.alloc(MiB, 0xbb));
  // What the name would be as a plain relative path: a file QEMU never opens.
  mkdirSync(join(images, 'file:', images), { recursive: true });
  writeFileSync(join(images, 'file:', base), Buffer.alloc(MiB, 0xaa));
  const img = overlay(join(images, 'top.qcow2'), `file:${base}`);
  await engine.addDisk({ path: img, name: 'top' });
  const snap = await snapshot(engine, 'top', 's1');

  const clone = join(images, 'clone.raw');
  await finished(engine, engine.startClone(snap.id, clone, { format: 'raw' }));
  t.ok(readFileSync(clone).equals(Buffer.alloc(MiB, 0xbb)), 'the snapshot holds the backing file QEMU reads');

  qemuIo(img, 'qcow2', `write -P 0xcc 0 ${512 * 1024}`);
  await finished(engine, engine.startRollback('top', snap.id));
  const seen = join(images, 'seen.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, seen);
  t.ok(readFileSync(seen).equals(readFileSync(clone)), 'after the rollback QEMU reads the snapshot through the same backing name');
  t.match(qemuImg('info', '--output=json', img), `"backing-filename": "file:${base}"`, 'the rolled-back image keeps the name');
});

t.test('a relative file: backing name is refused: QEMU opens it from its own working directory', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  writeFileSync(join(images, 'x.raw'), Buffer.alloc(MiB, 0xbb));
  writeFileSync(join(images, 'file:x.raw'), Buffer.alloc(MiB, 0xaa));
  const r = await refusal(() => engine.addDisk({ path: overlay(join(images, 'top.qcow2'), 'file:x.raw') }));
  t.equal(r.code, 'UnsupportedFormat', r.message);
  t.match(r.message, /relative file: name, which QEMU opens from its own working directory/);
});

t.test('a backing name with another protocol prefix is refused naming it, even where a file has that name', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  for (const [i, [name, protocol]] of ([['nbd:localhost:10809', 'nbd'], ['http://host/x.raw', 'http'], ['rbd:pool/img', 'rbd'], ['odd:x.raw', 'odd']] as const).entries()) {
    if (!name.includes('/')) writeFileSync(join(images, name), Buffer.alloc(MiB, 0xaa));
    const r = await refusal(() => engine.addDisk({ path: overlay(join(images, `top${i}.qcow2`), name) }));
    t.equal(r.code, 'UnsupportedFormat', r.message);
    t.match(r.message, `names the protocol "${protocol}:", which is not a file`);
  }
  t.same(engine.listDisks(), [], 'nothing registered');
});

t.test('a registered overlay rebased onto a protocol name is refused by snapshot before it reads anything', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  writeFileSync(join(images, 'x.raw'), Buffer.alloc(MiB, 0xbb));
  const img = overlay(join(images, 'top.qcow2'), 'x.raw');
  await engine.addDisk({ path: img, name: 'top' });
  qemuImg('rebase', '-q', '-u', '-b', 'nbd:localhost:10809', '-F', 'raw', img);
  const job = await engine.waitJob(engine.startSnapshot('top').id) as Job;
  t.equal(job.state, 'failed');
  t.equal(job.error?.code, 'UnsupportedFormat', job.error?.message ?? '');
});

t.test('a backing name that is a symlink loop inside the root is refused as a loop', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  symlinkSync('loop2', join(images, 'loop1'));
  symlinkSync('loop1', join(images, 'loop2'));
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'loop1', '-F', 'raw', join(images, 'bl.qcow2'), '1M');
  const r = await refusal(() => engine.addDisk({ path: join(images, 'bl.qcow2') }));
  t.equal(r.code, 'PathNotAllowed', r.message);
  t.match(r.message, /has the backing file \S*\/loop1, which is a symlink loop/);
  t.notMatch(r.message, /outside every image root/);
});
