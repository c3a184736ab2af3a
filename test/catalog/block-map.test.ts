import t from 'tap';
import type { Test } from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { commitDelta, distinctBlocks, readView, removeFromChain, uniqueBytes } from '../../src/catalog/block-map';
import type { SnapshotRecord } from '../../src/catalog/records';

const BS = 64 * 1024;

/** A view where block i holds digest byte `content[i]` (0 = ZERO). */
function view(content: number[]): Buffer {
  const b = Buffer.alloc(content.length * 32);
  content.forEach((c, i) => { if (c) b.fill(c, i * 32, i * 32 + 32); });
  return b;
}

function decode(v: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < v.length / 32; i++) out.push(v[i * 32]!);
  return out;
}

function snap(id: string, parentId: string | null, blocks: number): SnapshotRecord {
  return {
    id, diskId: 'd-0000000000000001', name: id, description: '', status: 'available', type: 'manual', parentId,
    createdAt: new Date(Date.now() + Number(id.slice(2))).toISOString(), completedAt: null,
    sizeBytes: blocks * BS, blockSize: BS, blockCount: blocks, logicalBytes: 0, changedBlocks: 0, newBytes: 0, error: null, jobId: null,
  };
}

function take(c: Catalog, s: SnapshotRecord, content: number[]): ReturnType<typeof commitDelta> {
  return c.txn(() => {
    c.putSnapshot(s);
    const parent = s.parentId ? c.getSnapshot(s.parentId)! : null;
    return commitDelta(c, s, view(content), parent ? readView(c, parent) : null);
  });
}

function open(t: Test): Catalog {
  const c = Catalog.open(t.testdir(), BS);
  t.teardown(() => c.close());
  return c;
}

t.test('an incremental snapshot stores only the blocks that differ from its parent', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 4), [1, 2, 3, 4]);
  const st = take(c, snap('s-2', 's-1', 4), [1, 9, 3, 4]);
  t.equal(st.changedBlocks, 1);
  t.equal(c.deltaSize('s-2'), 1);
  t.same(decode(readView(c, c.getSnapshot('s-2')!)), [1, 9, 3, 4]);
  t.equal(c.totals().blocks, 5);
});

t.test('a block that became zero is recorded as an explicit ZERO entry', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 3), [1, 2, 3]);
  take(c, snap('s-2', 's-1', 3), [1, 0, 3]);
  t.same(decode(readView(c, c.getSnapshot('s-2')!)), [1, 0, 3]);
  t.same(decode(readView(c, c.getSnapshot('s-1')!)), [1, 2, 3]);
});

t.test('a mostly ZERO map records exactly its data blocks, and the ones it zeroed, across long ZERO runs', async (t) => {
  const c = open(t);
  const base = new Array<number>(3000).fill(0);
  base[1023] = 1; base[1024] = 2; base[2999] = 3;
  const st = take(c, snap('s-1', null, 3000), base);
  t.same(st, { changedBlocks: 3, newBytes: 3 * BS, logicalBytes: 3 * BS });
  const next = [...base];
  next[1024] = 0; next[2500] = 4;
  const st2 = take(c, snap('s-2', 's-1', 3000), next);
  t.same(st2, { changedBlocks: 2, newBytes: BS, logicalBytes: 3 * BS });
  t.same(decode(readView(c, c.getSnapshot('s-2')!)), next);
});

t.test('deleting a middle snapshot pushes its entries into the child and keeps every view', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 4), [1, 2, 3, 4]);
  take(c, snap('s-2', 's-1', 4), [1, 5, 3, 4]);
  take(c, snap('s-3', 's-2', 4), [1, 5, 6, 4]);
  const freed = c.txn(() => removeFromChain(c, c.getSnapshot('s-2')!));
  t.same(freed, [], 'block 5 is still seen by s-3');
  t.equal(c.getSnapshot('s-3')!.parentId, 's-1');
  t.same(decode(readView(c, c.getSnapshot('s-3')!)), [1, 5, 6, 4]);
  t.same(decode(readView(c, c.getSnapshot('s-1')!)), [1, 2, 3, 4]);
  t.equal(c.totals().blocks, 6);
});

t.test('deleting the root makes the child a root with a complete view', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 3), [1, 2, 3]);
  take(c, snap('s-2', 's-1', 3), [1, 2, 7]);
  const freed = c.txn(() => removeFromChain(c, c.getSnapshot('s-1')!));
  t.same(freed.map((d) => d[0]), [3]);
  t.equal(c.getSnapshot('s-2')!.parentId, null);
  t.same(decode(readView(c, c.getSnapshot('s-2')!)), [1, 2, 7]);
  t.equal(c.freeCount(), 1);
});

t.test('a child of a shrunk snapshot keeps ZERO where the larger grandparent had data', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 4), [1, 2, 3, 4]);
  take(c, snap('s-2', 's-1', 2), [1, 2]);
  take(c, snap('s-3', 's-2', 4), [1, 2, 0, 0]);
  t.same(decode(readView(c, c.getSnapshot('s-3')!)), [1, 2, 0, 0]);
  c.txn(() => removeFromChain(c, c.getSnapshot('s-2')!));
  t.same(decode(readView(c, c.getSnapshot('s-3')!)), [1, 2, 0, 0]);
});

t.test('uniqueBytes counts blocks only this snapshot holds and no child inherits', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 3), [1, 2, 3]);
  take(c, snap('s-2', 's-1', 3), [1, 2, 4]);
  t.equal(uniqueBytes(c, c.getSnapshot('s-1')!), BS, 'block 3 is overridden by the child');
  t.equal(uniqueBytes(c, c.getSnapshot('s-2')!), BS, 'block 4 only in s-2');
});

t.test('identical blocks across disks are one stored block with several references', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 2), [1, 2]);
  const other = { ...snap('s-2', null, 2), diskId: 'd-0000000000000002' };
  const st = take(c, other, [1, 2]);
  t.equal(st.newBytes, 0);
  t.equal(c.totals().blocks, 2);
  t.equal(c.refCount(Buffer.alloc(32, 1)), 2);
  t.same(distinctBlocks(c, [c.getSnapshot('s-1')!, c.getSnapshot('s-2')!]), { blocks: 2, bytes: 2 * BS });
});

t.test('a block three snapshots reference stays until the last of them is deleted', async (t) => {
  const c = open(t);
  const block = Buffer.alloc(32, 1);
  for (const n of [1, 2, 3]) take(c, { ...snap(`s-${n}`, null, 1), diskId: `d-000000000000000${n}` }, [1]);
  const remove = (id: string) => c.txn(() => removeFromChain(c, c.getSnapshot(id)!));
  t.same(remove('s-1'), []);
  t.same(remove('s-2'), []);
  t.ok(c.isReferenced(block) && !c.isFree(block), 'one reference left: not freed');
  t.same(remove('s-3'), [block]);
  t.ok(!c.isReferenced(block) && c.isFree(block), 'the last reference gone: on the free list');
});

t.test('a freed digest committed again is taken back from the free list', async (t) => {
  const c = open(t);
  take(c, snap('s-1', null, 1), [1]);
  c.txn(() => removeFromChain(c, c.getSnapshot('s-1')!));
  t.equal(c.freeCount(), 1);
  take(c, snap('s-2', null, 1), [1]);
  t.equal(c.freeCount(), 0);
  t.equal(c.totals().blocks, 1);
});

t.test('a catalog of another schema version is refused with CatalogVersion', async (t) => {
  const dir = t.testdir();
  const c = Catalog.open(dir, BS);
  const { open: lmdbOpen } = await import('lmdb');
  await c.close();
  const root = lmdbOpen({ path: `${dir}/catalog.mdb` });
  await root.openDB({ name: 'meta' }).put('schemaVersion', 99);
  await root.close();
  t.throws(() => Catalog.open(dir, BS), { code: 'CatalogVersion', message: /newer blocksnap/ });
});
