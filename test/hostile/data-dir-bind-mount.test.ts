/**
 * realpath does not cross a bind mount: the data dir, a directory above it or one of its store
 * directories bind-mounted inside an image root is another real path to the same files, and a
 * client naming the catalog there registered it as a raw disk and rolled it back (snapshots were
 * lost). The fence compares the identity (device, inode) of every directory on the path too.
 * Bind mounts need root; every mount is undone at teardown.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import { snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

function canMount(): string | false {
  if (process.geteuid?.() !== 0) return 'bind mounts need root';
  return false;
}

/** Bind-mounts `from` at `at` (created) until the test ends; false when mounts are not allowed here. */
function bind(mounts: string[], from: string, at: string): boolean {
  mkdirSync(at, { recursive: true });
  if (spawnSync('mount', ['--bind', from, at]).status !== 0) return false;
  mounts.push(at);
  return true;
}

async function setUp(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'bsbind-'));
  const mounts: string[] = [];
  const root = join(dir, 'images');
  const dataDir = join(dir, 'srv', 'data');
  mkdirSync(root);
  let engine: Engine | undefined;
  // One teardown, in this order: the engine closed, every mount undone, then the directory removed.
  t.teardown(async () => {
    await engine?.close();
    for (const at of mounts.reverse()) spawnSync('umount', [at]);
    rmSync(dir, { recursive: true, force: true });
  });
  engine = await Engine.open({ dataDir, imageRoots: [root], blockSize: BS });
  const img = makeImage(join(root, 'vm.raw'), 2 * BS);
  fillBlock(img, 0, BS, 'vm');
  await engine.addDisk({ path: img, name: 'vm' });
  await snapshot(engine, 'vm', 's1');
  return { engine, root, dataDir, srv: join(dir, 'srv'), mounts };
}

const refused = { code: 'PathNotAllowed', message: /inside the daemon's data directory/ };

t.test('the data dir bind-mounted inside a root is fenced', { skip: canMount() }, async (t) => {
  const { engine, root, dataDir, mounts } = await setUp(t);
  if (!bind(mounts, dataDir, join(root, 'bm'))) { t.comment('skipped: mount --bind is not allowed here'); return; }
  await t.rejects(engine.addDisk({ path: join(root, 'bm', 'catalog.mdb'), name: 'cat', format: 'raw' }), refused, 'the catalog');
  await t.rejects(engine.addDisk({ path: join(root, 'bm', 'lock'), name: 'lock', format: 'raw' }), refused, 'the lock file');
  t.throws(() => engine.startClone('s1', join(root, 'bm', 'evil.raw')), refused, 'a clone into it');
  t.throws(() => engine.startClone('s1', join(root, 'bm', 'blocks', 'evil.raw')), refused, 'a clone into its store');
  await t.rejects(engine.addDisk({ path: join(root, 'bm', 'missing.raw') }), refused, 'a missing file there, refused the same way');
});

t.test('a directory above the data dir bind-mounted inside a root is fenced', { skip: canMount() }, async (t) => {
  const { engine, root, srv, mounts } = await setUp(t);
  if (!bind(mounts, srv, join(root, 'srv'))) { t.comment('skipped: mount --bind is not allowed here'); return; }
  await t.rejects(engine.addDisk({ path: join(root, 'srv', 'data', 'catalog.mdb'), name: 'cat', format: 'raw' }), refused);
  t.match(await engine.addDisk({ path: makeImage(join(root, 'srv', 'beside.raw'), BS), name: 'beside' }), { name: 'beside' },
    'the rest of the mounted directory stays usable');
});

t.test('a fan-out directory of the store bind-mounted inside a root is fenced, one made after the start too', { skip: canMount() }, async (t) => {
  const { engine, root, dataDir, mounts } = await setUp(t);
  // Blocks stored after the engine opened: their fan-out directories are new since.
  const img = makeImage(join(root, 'more.raw'), 4 * BS);
  for (let i = 0; i < 4; i++) fillBlock(img, i, BS, `more-${i}`);
  await engine.addDisk({ path: img, name: 'more' });
  await snapshot(engine, 'more', 'm1');
  const fanouts = readdirSync(join(dataDir, 'blocks')).filter((d) => /^[0-9a-f]{3}$/.test(d));
  const fanout = fanouts[fanouts.length - 1]!;
  const block = readdirSync(join(dataDir, 'blocks', fanout))[0]!;
  if (!bind(mounts, join(dataDir, 'blocks', fanout), join(root, 'fo'))) { t.comment('skipped: mount --bind is not allowed here'); return; }
  await t.rejects(engine.addDisk({ path: join(root, 'fo', block), name: 'blk', format: 'raw' }), refused, 'a block file');
  t.throws(() => engine.startClone('s1', join(root, 'fo', 'f'.repeat(64))), refused, 'a clone named like a block');
});
