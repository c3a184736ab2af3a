/**
 * The catalog holds disk paths, names, descriptions, tags and remotes: its files are the daemon
 * user's only, whatever the umask and whoever may search the data dir, including a catalog an
 * older version created 0644.
 */
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';

const BLOCK = 4 * 1024 * 1024;
const mode = (p: string): string => (statSync(p).mode & 0o777).toString(8);

t.test('catalog.mdb and its lock file are created 0600, and made 0600 when an older catalog opens', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bscm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'data');
  const files = [join(dataDir, 'catalog.mdb'), join(dataDir, 'catalog.mdb-lock')];
  const old = process.umask(0o022);
  try {
    await Catalog.open(dataDir, BLOCK).close();
    t.same(files.map(mode), ['600', '600'], 'created private even under umask 022');
    for (const f of files) chmodSync(f, 0o644);
    const infos: object[] = [];
    await Catalog.open(dataDir, BLOCK, { log: { info: (o) => infos.push(o), warn: () => undefined } }).close();
    t.same(files.map(mode), ['600', '600'], 'an older catalog\'s files are made private');
    t.equal(infos.filter((o) => 'file' in o).length, 2, 'each change is logged');
    t.equal(mode(dataDir), '700', 'the data dir it creates is private');
  } finally {
    process.umask(old);
  }
});
