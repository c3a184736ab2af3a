import t from 'tap';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import type { SnapshotRecord } from '../../src/catalog/records';
import { matchesTags } from '../../src/engine/tags';
import { snapshot } from '../helpers/engine';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

t.test('tag, retag, untag, and select by tags', async (t) => {
  const f = await openSmallEngine(t);
  const d = await smallDisk(f, 'vm', 1);
  const a = await snapshot(f.engine, d.id, 'a');
  await snapshot(f.engine, d.id, 'b');
  t.same(a.tags, {}, 'a new snapshot has no tags');
  t.equal(a.groupId, null);
  t.same(f.engine.tagSnapshot('a', { env: 'prod', ticket: 'OPS-1' }).tags, { env: 'prod', ticket: 'OPS-1' });
  t.same(f.engine.tagSnapshot('b', { env: 'test' }).tags, { env: 'test' });
  t.same(f.engine.tagSnapshot('a', { ticket: 'OPS-2' }).tags, { env: 'prod', ticket: 'OPS-2' }, 'an existing key takes the new value');
  t.same(f.engine.getSnapshot('a').tags, { env: 'prod', ticket: 'OPS-2' }, 'tags are stored');
  const prod = f.engine.listSnapshots().filter((s) => matchesTags(s.tags, { env: 'prod' }));
  t.same(prod.map((s) => s.name), ['a']);
  t.same(f.engine.untagSnapshot('a', ['ticket', 'absent']).tags, { env: 'prod' }, 'removing an absent key is not an error');
  t.throws(() => f.engine.tagSnapshot('a', { 'bad key': 'x' }), { code: 'InvalidArgument' });
  t.throws(() => f.engine.tagSnapshot('a', { k: 'line\nbreak' }), { code: 'InvalidArgument' });
  const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 'v']));
  t.throws(() => f.engine.tagSnapshot('a', many), { code: 'InvalidArgument' }, 'at most 20 tags');
  t.throws(() => f.engine.tagSnapshot('nope', { k: 'v' }), { code: 'SnapshotNotFound' });
});

t.test('matchesTags: every filter pair must match exactly', async (t) => {
  t.ok(matchesTags({ a: '1', b: '2' }, { a: '1' }));
  t.ok(matchesTags({ a: '1' }, {}));
  t.notOk(matchesTags({ a: '1' }, { a: '2' }));
  t.notOk(matchesTags({ a: '1' }, { a: '1', b: '2' }));
  t.notOk(matchesTags({}, { constructor: '' }), 'no prototype keys');
});

t.test('records written before tags and groups existed read as no tags and no group', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const catalog = Catalog.open(dataDir, KiB64);
  const old: SnapshotRecord = {
    id: 's-00000000000000aa', diskId: 'd-00000000000000aa', name: 'old', description: '', status: 'available', type: 'manual',
    parentId: null, createdAt: '2026-01-01T00:00:00.000Z', completedAt: '2026-01-01T00:00:01.000Z', sizeBytes: 0, blockSize: KiB64,
    blockCount: 0, logicalBytes: 0, changedBlocks: 0, newBytes: 0, error: null, jobId: null,
  };
  catalog.txn(() => {
    catalog.putDisk({ id: 'd-00000000000000aa', name: 'old-disk', path: '/nonexistent', format: 'raw', sizeBytes: 0, createdAt: old.createdAt, headSnapshotId: old.id, pendingRollback: null, cow: null });
    catalog.putSnapshot(old);
  });
  await catalog.close();
  const f = await openSmallEngine(t, { dir });
  const s = f.engine.getSnapshot('old');
  t.same(s.tags, {});
  t.equal(s.groupId, null);
  t.equal(s.progress, null);
  t.same(f.engine.tagSnapshot('old', { k: 'v' }).tags, { k: 'v' }, 'and can be tagged');
});
