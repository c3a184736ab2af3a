/**
 * A path outside the image roots is refused before anything about it is told: whether it exists,
 * whether its directory does, or where a symlink inside a root that leads out of them goes. The
 * refusal is one fixed answer for all of it; "does not exist" is said only of places inside a root.
 */
import t, { type Test } from 'tap';
import fs, { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import { finished, snapshot } from '../helpers/engine';
import { makeImage } from '../helpers/images';

const BS = 64 * 1024;

async function setUp(t: Test) {
  const dir = t.testdir();
  const root = join(dir, 'images');
  const outside = join(dir, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [root], blockSize: BS });
  t.teardown(() => engine.close());
  makeImage(join(root, 'vm.raw'), 2 * BS);
  await engine.addDisk({ path: join(root, 'vm.raw'), name: 'vm' });
  await snapshot(engine, 'vm', 's1');
  makeImage(join(outside, 'secret.raw'), BS);
  mkdirSync(join(outside, 'sub'));
  writeFileSync(join(outside, 'file'), 'x');
  symlinkSync(join(outside, 'secret.raw'), join(root, 'to-existing'));
  symlinkSync(join(outside, 'missing.raw'), join(root, 'to-missing'));
  symlinkSync(join(outside, 'nodir', 'x.raw'), join(root, 'to-missing-dir'));
  // A root is a directory, not a string prefix: a sibling named like it lies outside it.
  const sibling = join(dir, 'images2');
  mkdirSync(sibling);
  makeImage(join(sibling, 'evil.raw'), BS);
  return { engine, root, outside, sibling };
}

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
  return { code: 'ok', message: '' };
}

t.test('disk add: the same refusal whatever is outside the roots', async (t) => {
  const { engine, root, outside } = await setUp(t);
  const add = (path: string) => refusal(engine.addDisk({ path }));
  const fixed = (path: string) => ({ code: 'PathNotAllowed', message: `${path} is outside the image roots, itself or through a symbolic link on its way: ${root}` });
  for (const path of [
    join(outside, 'secret.raw'), // exists
    join(outside, 'missing.raw'), // does not, in a directory that does
    join(outside, 'nodir', 'x.raw'), // nor does its directory
    join(outside, 'file', 'x.raw'), // its "directory" is a file
    join(outside, 'sub'), // a directory
    join(root, 'to-existing'), // a symlink in a root to a file outside
    join(root, 'to-missing'), // to a missing one
    join(root, 'to-missing-dir'), // in a missing directory
  ]) t.same(await add(path), fixed(path), path);
});

t.test('clone: the same refusal whatever is outside the roots', async (t) => {
  const { engine, root, outside } = await setUp(t);
  const clone = (path: string) => refusal(() => engine.startClone('s1', path));
  const fixed = (path: string) => ({ code: 'PathNotAllowed', message: `${path} is outside the image roots, itself or through a symbolic link on its way: ${root}` });
  for (const path of [
    join(outside, 'copy.raw'),
    join(outside, 'nodir', 'copy.raw'),
    join(outside, 'file', 'copy.raw'),
    join(root, 'to-missing-dir', 'copy.raw'),
  ]) t.same(await clone(path), fixed(path), path);
});

t.test('disk add refuses an image in a sibling directory whose name begins with the root\'s', async (t) => {
  const { engine, root, sibling } = await setUp(t);
  const path = join(sibling, 'evil.raw');
  t.same(await refusal(engine.addDisk({ path })), { code: 'PathNotAllowed', message: `${path} is outside the image roots, itself or through a symbolic link on its way: ${root}` });
});

t.test('clone refuses a target in a sibling directory whose name begins with the root\'s', async (t) => {
  const { engine, root, sibling } = await setUp(t);
  const path = join(sibling, 'copy.raw');
  t.same(await refusal(() => engine.startClone('s1', path)), { code: 'PathNotAllowed', message: `${path} is outside the image roots, itself or through a symbolic link on its way: ${root}` });
});

t.test('inside a root, a missing file or directory is still reported as missing', async (t) => {
  const { engine, root } = await setUp(t);
  t.match(await refusal(engine.addDisk({ path: join(root, 'missing.raw') })), { code: 'ImageNotFound', message: /does not exist/ });
  t.match(await refusal(engine.addDisk({ path: join(root, 'nodir', 'x.raw') })), { code: 'ImageNotFound', message: /does not exist/ });
  t.match(await refusal(() => engine.startClone('s1', join(root, 'nodir', 'copy.raw'))), { code: 'ImageNotFound', message: /directory .*nodir does not exist/ });
  t.match(await refusal(() => engine.startClone('s1', join(root, 'vm.raw', 'copy.raw'))), { code: 'ImageNotFound', message: /vm\.raw is not a directory/ });
});

t.test('a clone target whose directory is swapped for a symlink while it is resolved is refused as such, not as an internal error', async (t) => {
  const { engine, root } = await setUp(t);
  mkdirSync(join(root, 'd'));
  // What realpath answers when it saw a symlink that readlink then found gone (the swap race).
  const real = fs.realpathSync;
  fs.realpathSync = Object.assign((p: fs.PathLike) => {
    if (String(p) === join(root, 'd')) throw Object.assign(new Error(`EINVAL: invalid argument, readlink '${String(p)}'`), { code: 'EINVAL' });
    return real(p);
  }, { native: real.native }) as typeof fs.realpathSync;
  t.teardown(() => { fs.realpathSync = real; });
  const r = await refusal(() => engine.startClone('s1', join(root, 'd', 'copy.raw')));
  fs.realpathSync = real;
  t.match(r, { code: 'PathNotAllowed', message: /changed while it was being resolved/ });
  const ok = engine.startClone('s1', join(root, 'd', 'copy.raw'));
  await finished(engine, ok);
});
