/**
 * The README's quick start runs the daemon with its data directory inside its image root. No
 * client may then name a file of the data dir: registering the catalog as a disk and rolling it
 * back crashed LMDB and lost snapshots; a clone or a stream written there lands in the store.
 */
import t, { type Test } from 'tap';
import { mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import { snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

/** An engine on `dataDir` with root `root`, and disk vm there snapshotted as s1. */
async function snapshotted(t: Test, root: string, dataDir: string) {
  const engine = await Engine.open({ dataDir, imageRoots: [root], blockSize: BS });
  t.teardown(() => engine.close());
  const img = makeImage(join(root, 'vm.raw'), 2 * BS);
  fillBlock(img, 0, BS, 'vm');
  await engine.addDisk({ path: img, name: 'vm' });
  await snapshot(engine, 'vm', 's1');
  return engine;
}

async function rootHoldingDataDir(t: Test) {
  const root = t.testdir();
  const dataDir = join(root, 'blocksnap-data');
  return { engine: await snapshotted(t, root, dataDir), root, dataDir };
}

const refused = { code: 'PathNotAllowed', message: /inside the daemon's data directory .*blocksnap-data/ };

t.test('the catalog cannot be registered as a disk when the data dir is inside an image root', async (t) => {
  const { engine, dataDir } = await rootHoldingDataDir(t);
  await t.rejects(engine.addDisk({ path: join(dataDir, 'catalog.mdb'), name: 'cat' }), refused);
});

t.test('a block file cannot be registered as a disk when the data dir is inside an image root', async (t) => {
  const { engine, dataDir } = await rootHoldingDataDir(t);
  const fanout = readdirSync(join(dataDir, 'blocks')).find((d) => /^[0-9a-f]{3}$/.test(d))!;
  const block = readdirSync(join(dataDir, 'blocks', fanout))[0]!;
  await t.rejects(engine.addDisk({ path: join(dataDir, 'blocks', fanout, block), name: 'blk' }), refused);
});

t.test('a clone cannot be written into the data dir when it is inside an image root', async (t) => {
  const { engine, dataDir } = await rootHoldingDataDir(t);
  t.throws(() => engine.startClone('s1', join(dataDir, 'blocks', 'evil.raw')), refused);
});

t.test('a stream export cannot be written into the data dir when it is inside an image root', async (t) => {
  const { engine, dataDir } = await rootHoldingDataDir(t);
  t.throws(() => engine.offsite.streams.startExport('s1', join(dataDir, 'x.bsnap')), refused);
});

t.test('the rest of the image root stays usable', async (t) => {
  const { engine, root } = await rootHoldingDataDir(t);
  const img = makeImage(join(root, 'other.raw'), BS);
  t.match(await engine.addDisk({ path: img, name: 'other' }), { name: 'other' });
});

t.test('a block store moved into an image root behind a symlink is fenced too', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'images');
  const dataDir = join(dir, 'data');
  mkdirSync(join(root, 'moved-blocks'), { recursive: true });
  mkdirSync(dataDir);
  symlinkSync(join(root, 'moved-blocks'), join(dataDir, 'blocks'));
  const engine = await snapshotted(t, root, dataDir);
  const fanout = readdirSync(join(root, 'moved-blocks')).find((d) => /^[0-9a-f]{3}$/.test(d))!;
  const block = readdirSync(join(root, 'moved-blocks', fanout))[0]!;
  await t.rejects(engine.addDisk({ path: join(root, 'moved-blocks', fanout, block), name: 'blk' }), { code: 'PathNotAllowed', message: /inside the daemon's data directory/ });
});
