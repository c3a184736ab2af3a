/**
 * Catalog faults: a transaction larger than the LMDB map (the map grows, nothing is lost), and a
 * catalog written by a newer schema version (the daemon refuses it with a clear message and
 * leaves it untouched).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { CATALOG_FILE, META_SCHEMA_VERSION, SCHEMA_VERSION } from '../../src/catalog/schema';
import { DaemonProcess, makeLayout } from '../crash/daemon-process';

const digest = (i: number): Buffer => createHash('sha256').update(`block-${i}`).digest();

t.test('a transaction that overflows a tiny map grows it and commits everything', async (t) => {
  const dataDir = t.testdir();
  const initial = 64 * 1024;
  const catalog = Catalog.open(dataDir, 65536, { mapSize: initial });
  const entries = 20_000; // ~1.5 MiB of keys, digests and counts: many times the initial map
  catalog.txn(() => {
    for (let i = 0; i < entries; i++) {
      catalog.putEntry('s-0000000000000001', i, digest(i));
      catalog.addRef(digest(i), 65536);
    }
  });
  t.equal(catalog.deltaSize('s-0000000000000001'), entries, 'every entry is there');
  t.same(catalog.totals(), { blocks: entries, bytes: entries * 65536 }, 'and the totals of the same transaction');
  await catalog.close();
  t.ok(statSync(join(dataDir, CATALOG_FILE)).size > initial * 10, 'the map file grew past its initial size');

  const again = Catalog.open(dataDir, 65536);
  t.teardown(() => again.close());
  t.equal(again.deltaSize('s-0000000000000001'), entries, 'after reopening, every entry is still there');
  t.equal(again.refCount(digest(entries - 1)), 1, 'and so are the reference counts');
});

t.test('a catalog from a newer schema version is refused, with the reason, and left untouched', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir);
  const c = Catalog.open(layout.dataDir, 65536);
  await c.close();
  const raw = open({ path: join(layout.dataDir, CATALOG_FILE), compression: false });
  const meta = raw.openDB<unknown, string>({ name: 'meta' });
  await meta.put(META_SCHEMA_VERSION, SCHEMA_VERSION + 1);
  await raw.close();

  const d = DaemonProcess.spawn(layout);
  const { code } = await d.exited;
  t.equal(code, 2, 'the daemon exits 2: a restart would find the same catalog');
  t.match(d.stderr(), new RegExp(`schema version ${SCHEMA_VERSION + 1}; this blocksnap reads version ${SCHEMA_VERSION} \\(it was written by a newer blocksnap: upgrade\\) \\[CatalogVersion\\]`), 'saying why, with the code');

  const check = open({ path: join(layout.dataDir, CATALOG_FILE), compression: false, readOnly: true });
  t.equal(check.openDB<unknown, string>({ name: 'meta' }).get(META_SCHEMA_VERSION), SCHEMA_VERSION + 1, 'the catalog still says the newer version');
  await check.close();
});
