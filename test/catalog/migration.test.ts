import t from 'tap';
import { open } from 'lmdb';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import { CATALOG_FILE, META_SCHEMA_VERSION, SCHEMA_VERSION } from '../../src/catalog/schema';

const BS = 64 * 1024;

t.test('a version 1 catalog is migrated on open: disk records gain cow: null, the rest is kept', async (t) => {
  const dir = t.testdir();
  const c = Catalog.open(dir, BS);
  await c.close();
  // What blocksnap before copy-on-write disks wrote: no `cow` field, schema version 1.
  const raw = open({ path: join(dir, CATALOG_FILE), compression: false });
  const disks = raw.openDB<Record<string, unknown>, string>({ name: 'disks' });
  const old = {
    id: 'd-00000000000000aa', name: 'web1', path: '/images/web1.img', format: 'raw', sizeBytes: 4 * BS,
    createdAt: '2026-01-01T00:00:00.000Z', headSnapshotId: null, pendingRollback: null,
  };
  await disks.put(old.id, old);
  await raw.openDB<unknown, string>({ name: 'meta' }).put(META_SCHEMA_VERSION, 1);
  await raw.close();

  const migrated = Catalog.open(dir, BS);
  t.teardown(() => migrated.close());
  t.same(migrated.getDisk(old.id), { ...old, cow: null });
  t.equal(migrated.allDisks().length, 1);
  const check = open({ path: join(dir, CATALOG_FILE), compression: false, readOnly: true });
  t.equal(check.openDB<unknown, string>({ name: 'meta' }).get(META_SCHEMA_VERSION), SCHEMA_VERSION, 'the catalog now says the current version');
  await check.close();
});

t.test('a version 2 catalog is opened as the current version, its records as they were', async (t) => {
  // Versions reading schema 2 take version 2 layer maps for corrupt: once this version has opened
  // a data dir, they must refuse it (CatalogVersion) rather than fail on its copy-on-write disks.
  const dir = t.testdir();
  const c = Catalog.open(dir, BS);
  await c.close();
  const raw = open({ path: join(dir, CATALOG_FILE), compression: false });
  const disk = {
    id: 'd-00000000000000bb', name: 'web2', path: '/images/web2.img', format: 'raw', sizeBytes: 4 * BS,
    createdAt: '2026-01-01T00:00:00.000Z', headSnapshotId: null, pendingRollback: null, cow: null,
  };
  await raw.openDB<Record<string, unknown>, string>({ name: 'disks' }).put(disk.id, disk);
  await raw.openDB<unknown, string>({ name: 'meta' }).put(META_SCHEMA_VERSION, 2);
  await raw.close();

  const opened = Catalog.open(dir, BS);
  t.teardown(() => opened.close());
  t.same(opened.getDisk(disk.id), disk, 'the disk record is unchanged');
  const check = open({ path: join(dir, CATALOG_FILE), compression: false, readOnly: true });
  t.equal(check.openDB<unknown, string>({ name: 'meta' }).get(META_SCHEMA_VERSION), 3, 'the catalog says version 3');
  await check.close();
});

t.test('a new catalog starts at the current schema version', async (t) => {
  const dir = t.testdir();
  const c = Catalog.open(dir, BS);
  await c.close();
  const check = open({ path: join(dir, CATALOG_FILE), compression: false, readOnly: true });
  t.equal(check.openDB<unknown, string>({ name: 'meta' }).get(META_SCHEMA_VERSION), SCHEMA_VERSION);
  await check.close();
});
