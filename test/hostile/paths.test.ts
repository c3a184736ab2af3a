/**
 * Hostile paths against the real daemon, which usually runs as root for users who do not: each
 * trick is refused with its code, and nothing outside the image roots is ever read into the
 * store or written.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Job, Snapshot } from '../../src/engine/types';
import { sleep } from '../crash/daemon-process';
import { ImageWriter } from '../crash/disk-image';
import { makeImage, pattern, writeAt } from '../helpers/images';
import { daemonWithOutside, type DaemonWithOutside } from './daemon-with-outside';

const BLOCK = 64 * 1024;

async function code(p: Promise<unknown>): Promise<string> {
  return p.then(() => 'ok', (e: { code: string }) => e.code);
}

function setUp(t: Test): Promise<DaemonWithOutside> {
  return daemonWithOutside(t, BLOCK);
}

t.test('every path trick is refused with its code', async (t) => {
  const { c, root, outside } = await setUp(t);
  const secret = join(outside, 'secret.img');
  makeImage(secret, 2 * BLOCK);
  writeAt(secret, 0, pattern('secret', BLOCK));
  makeImage(join(root, 'ok.img'), 2 * BLOCK);
  writeAt(join(root, 'ok.img'), 0, pattern('ok', BLOCK));
  mkdirSync(join(root, 'sub'));
  symlinkSync(secret, join(root, 'link-out.img'));
  symlinkSync(outside, join(root, 'dir-out'));
  spawnSync('mkfifo', [join(root, 'fifo.img')]);
  const haveDevice = spawnSync('mknod', [join(root, 'null.img'), 'c', '1', '3']).status === 0;
  await c.call('disk.add', { path: join(root, 'ok.img'), name: 'ok' });
  await c.call<Job>('snapshot.create', { disk: 'ok', name: 'base', wait: true });
  writeFileSync(join(root, 'taken.img'), 'x');
  symlinkSync(join(outside, 'planted.img'), join(root, 'dangling.img'));
  symlinkSync(join(root, 'taken.img'), join(root, 'link-in.img'));
  symlinkSync(join(root, 'loop-b.img'), join(root, 'loop-a.img'));
  symlinkSync(join(root, 'loop-a.img'), join(root, 'loop-b.img'));

  const add = (path: string): Promise<string> => code(c.call('disk.add', { path }));
  t.equal(await add(join(root, '..', 'outside', 'secret.img')), 'PathNotAllowed', '.. out of the root');
  t.equal(await add(join(root, 'sub', '..', '..', 'outside', 'secret.img')), 'PathNotAllowed', '.. through a subdirectory');
  t.equal(await add(secret), 'PathNotAllowed', 'a file outside every root');
  t.equal(await add(join(outside, 'nonexistent.img')), 'PathNotAllowed', 'a missing file outside the roots is not reported as missing');
  t.equal(await add(join(root, 'link-out.img')), 'PathNotAllowed', 'a symlink pointing outside');
  t.equal(await add(join(root, 'dir-out', 'secret.img')), 'PathNotAllowed', 'a symlinked directory pointing outside');
  t.equal(await add(join(root, 'loop-a.img')), 'PathNotAllowed', 'a symlink loop');
  t.equal(await add(join(root, 'sub')), 'NotAnImage', 'a directory');
  t.equal(await add(join(root, 'fifo.img')), 'NotAnImage', 'a FIFO (and the daemon does not hang opening it)');
  if (haveDevice) t.equal(await add(join(root, 'null.img')), 'NotAnImage', 'a device node');
  t.equal(await add('relative.img'), 'InvalidArgument', 'a relative path');
  t.equal(await add(`${root}/ok.img\u0000.evil`), 'InvalidArgument', 'a NUL byte');

  const clone = (path: string): Promise<string> => code(c.call('clone', { snapshot: 'base', path, wait: true }));
  t.equal(await clone(join(root, 'taken.img')), 'FileExists', 'a clone onto an existing file');
  t.equal(await clone(join(root, 'link-in.img')), 'FileExists', 'a clone onto a symlink inside the root');
  t.equal(await clone(join(root, 'dangling.img')), 'FileExists', 'a clone onto a dangling symlink that points outside');
  t.equal(await clone(join(root, 'dir-out', 'copy.img')), 'PathNotAllowed', 'a clone through a symlinked directory');
  t.equal(await clone(join(root, '..', 'outside', 'copy.img')), 'PathNotAllowed', 'a clone out of the root with ..');
  t.equal(await clone(join(root, 'sub')), 'FileExists', 'a clone onto a directory');
  t.equal(await clone(`${root}/`), 'InvalidArgument', 'a clone onto the root itself');
  t.notOk(existsSync(join(outside, 'planted.img')), 'nothing was created through the dangling symlink');
  t.notOk(existsSync(join(outside, 'copy.img')), 'nothing was created outside the root');
  t.equal(readFileSync(join(root, 'taken.img'), 'utf8'), 'x', 'the existing file is untouched');
  t.ok(lstatSync(join(root, 'dangling.img')).isSymbolicLink(), 'the symlink is untouched');
});

t.test('a disk path swapped for a symlink is refused and never read through', async (t) => {
  const { c, root, outside } = await setUp(t);
  const image = join(root, 'vm.img');
  makeImage(image, 4 * BLOCK);
  writeAt(image, 0, pattern('vm', 2 * BLOCK));
  const secret = join(outside, 'secret.img');
  makeImage(secret, 4 * BLOCK);
  writeAt(secret, 0, pattern('secret', 4 * BLOCK));
  const secretSha = ImageWriter.contentSha(secret);
  await c.call('disk.add', { path: image, name: 'vm' });

  // Swapped while the daemon is idle: refused before any job reads.
  const real = join(root, 'vm.real');
  spawnSync('mv', [image, real]);
  symlinkSync(secret, image);
  const refused = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'swapped', wait: true }).catch((e: { code: string }) => e);
  t.equal((refused as Job).error?.code ?? (refused as { code: string }).code, 'PathNotAllowed', 'a symlink swapped in is PathNotAllowed');
  rmSync(image);
  spawnSync('mv', [real, image]);

  // Swapped back and forth as fast as possible while snapshots start: the race between the
  // daemon's path check and its open. Whatever wins, no snapshot may hold the secret.
  const swapper = spawn(process.execPath, ['-e', `
    const fs = require('fs');
    const [image, real, link, secret] = process.argv.slice(1);
    try { fs.symlinkSync(secret, link); } catch {}
    const until = Date.now() + 60000;
    while (Date.now() < until) {
      fs.renameSync(image, real); fs.renameSync(link, image);   // image is now the symlink
      fs.renameSync(image, link); fs.renameSync(real, image);   // image is the file again
    }`, image, real, join(root, 'vm.link'), secret], { stdio: 'ignore' });
  t.teardown(() => { swapper.kill('SIGKILL'); });
  await sleep(100);
  const outcomes: Record<string, number> = {};
  for (let i = 0; i < 25; i++) {
    const job = await c.call<Job>('snapshot.create', { disk: 'vm', name: `race-${i}`, wait: true })
      .catch((e: { code: string; message: string }) => ({ error: { code: e.code, message: e.message } }) as Job);
    const k = job.state === 'succeeded' ? 'available' : job.error!.code;
    outcomes[k] = (outcomes[k] ?? 0) + 1;
    if (!['available', 'PathNotAllowed', 'NotAnImage', 'ImageNotFound'].includes(k)) t.comment(`unexpected: ${k}: ${job.error!.message}`);
  }
  swapper.kill('SIGKILL');
  await new Promise((r) => swapper.once('exit', r));
  if (existsSync(real)) {
    rmSync(image, { force: true });
    spawnSync('mv', [real, image]);
  }
  t.comment(JSON.stringify(outcomes));
  t.ok(Object.keys(outcomes).every((k) => ['available', 'PathNotAllowed', 'NotAnImage', 'ImageNotFound'].includes(k)), 'every refusal has a path code');
  const secretBlocks = new ImageWriter(BLOCK).blockDigests(secret);
  let leaked = 0;
  for (const s of await c.call<Snapshot[]>('snapshot.list', { disk: 'vm' })) {
    if (s.status !== 'available') continue;
    const copy = join(root, `check-${s.name}.img`);
    await c.call<Job>('clone', { snapshot: s.id, path: copy, wait: true });
    const digests = new ImageWriter(BLOCK).blockDigests(copy);
    if ([...digests.keys()].some((d) => secretBlocks.has(d)) || ImageWriter.contentSha(copy) === secretSha) leaked++;
    rmSync(copy);
  }
  t.equal(leaked, 0, 'no snapshot holds a byte of the file outside the root');
  t.equal(createHash('sha256').update(readFileSync(secret)).digest('hex'), secretSha, 'the outside file is unchanged');
});
