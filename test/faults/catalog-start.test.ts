/**
 * The daemon's start on a data dir whose catalog is gone or damaged while its block store holds
 * blocks: a clear refusal that a service manager does not retry (exit 2), never a new empty
 * catalog (with which store gc would delete every block) and never a crash. And the backup an
 * operator takes of a running daemon's catalog, which a daemon then starts on.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import { CATALOG_FILE } from '../../src/catalog/schema';
import { DaemonProcess, connect, makeLayout, type Layout } from '../crash/daemon-process';
import { snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

function blockFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'blocks');
  return readdirSync(dir).filter((f) => /^[0-9a-f]{3}$/.test(f)).flatMap((f) => readdirSync(join(dir, f))).sort();
}

/** A layout whose data dir holds one disk with one snapshot of 4 blocks. */
async function snapshotted(t: Test): Promise<Layout> {
  const dir = mkdtempSync(join(tmpdir(), 'bscat-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir, { blockSize: BS });
  const img = makeImage(join(layout.imageRoot, 'vm.raw'), 8 * BS);
  for (let i = 0; i < 4; i++) fillBlock(img, i, BS, `vm-${i}`);
  const e = await Engine.open({ dataDir: layout.dataDir, imageRoots: [layout.imageRoot], blockSize: BS });
  try {
    await e.addDisk({ path: img, name: 'vm' });
    await snapshot(e, 'vm', 's1');
  } finally {
    await e.close();
  }
  return layout;
}

t.test('a start with catalog.mdb gone beside a store of blocks is refused with CatalogMissing, exit 2, and makes no catalog', async (t) => {
  const layout = await snapshotted(t);
  const blocks = blockFiles(layout.dataDir);
  rmSync(join(layout.dataDir, CATALOG_FILE));
  const d = DaemonProcess.spawn(layout);
  const { code } = await d.exited;
  t.equal(code, 2, 'exit 2: a restart would find the same');
  t.match(d.stderr(), /the catalog .*catalog\.mdb is missing .*--new-catalog \[CatalogMissing\]/);
  t.throws(() => statSync(join(layout.dataDir, CATALOG_FILE)), { code: 'ENOENT' }, 'no new catalog was made');
  t.same(blockFiles(layout.dataDir), blocks, 'every block is still there');
});

t.test('an empty catalog.mdb beside a store of blocks is refused as a missing one', async (t) => {
  const layout = await snapshotted(t);
  writeFileSync(join(layout.dataDir, CATALOG_FILE), '');
  const d = DaemonProcess.spawn(layout);
  t.equal((await d.exited).code, 2);
  t.match(d.stderr(), /\[CatalogMissing\]/);
  t.equal(statSync(join(layout.dataDir, CATALOG_FILE)).size, 0, 'the file is left as it was');
});

t.test('--new-catalog starts a new catalog beside the blocks, and store gc is then refused with CatalogMismatch', async (t) => {
  const layout = await snapshotted(t);
  const blocks = blockFiles(layout.dataDir);
  rmSync(join(layout.dataDir, CATALOG_FILE));
  const d = await DaemonProcess.start(layout, ['--new-catalog']);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  const err = await c.call('store.gc', { wait: true }).then(() => null, (e: unknown) => e as { code: string; message: string });
  t.equal(err?.code, 'CatalogMismatch');
  t.match(err?.message, /is new beside the block store/);
  t.same(blockFiles(layout.dataDir), blocks, 'every block is still there');
});

t.test('a truncated catalog is refused with CatalogDamaged, exit 2, naming the file, and left as it was', async (t) => {
  const layout = await snapshotted(t);
  const path = join(layout.dataDir, CATALOG_FILE);
  truncateSync(path, 8192); // the two meta pages only: every page they name is past the end
  const d = DaemonProcess.spawn(layout);
  const { code, signal } = await d.exited;
  t.equal(signal, null, 'the daemon does not crash');
  t.equal(code, 2);
  t.match(d.stderr(), new RegExp(`the catalog ${path.replace(/[.]/g, '\\.')} is damaged .*\\[CatalogDamaged\\]`));
  t.equal(statSync(path).size, 8192, 'the damaged file is not replaced');
});

t.test('store backup-catalog writes a private copy of the running daemon\'s catalog that a daemon starts on', async (t) => {
  const layout = await snapshotted(t);
  const d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  const backup = join(layout.dir, 'catalog-backup.mdb');
  const r = await c.call<{ path: string; bytes: number }>('catalog.backup', { path: backup });
  c.close();
  t.equal(r.path, backup);
  t.equal(statSync(backup).mode & 0o777, 0o600, 'mode 0600, as the catalog');
  await d.stop();
  copyFileSync(backup, join(layout.dataDir, CATALOG_FILE));
  const again = await DaemonProcess.start(layout);
  t.teardown(() => again.kill());
  const c2 = await connect(layout);
  t.teardown(() => c2.close());
  const snaps = await c2.call<Array<{ name: string }>>('snapshot.list', {});
  t.same(snaps.map((s) => s.name), ['s1'], 'the copy holds the snapshot');
  const stats = await c2.call<{ catalogHold: unknown }>('store.stats', {});
  t.equal(stats.catalogHold, null, 'and, with nothing changed since, is the store\'s');
});

t.test('store backup-catalog never replaces a file', async (t) => {
  const layout = await snapshotted(t);
  const d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  const target = join(layout.dir, 'taken');
  writeFileSync(target, 'keep me');
  const err = await c.call('catalog.backup', { path: target }).then(() => null, (e: unknown) => e as { code: string });
  t.equal(err?.code, 'FileExists');
  t.equal(readFileSync(target, 'utf8'), 'keep me');
  t.same(readdirSync(layout.dir).filter((n) => n.startsWith('.taken')), [], 'and leaves no temp directory');
});


