import { createHash } from 'node:crypto';
import t from 'tap';
import { listBlockPresence, PAGE_PER_BLOCKS } from '../../src/remote/block-presence';
import { blockKey } from '../../src/remote/layout';
import { MemoryStore } from './memory-store';

const digest = (n: number): string => createHash('sha256').update(`block ${n}`).digest('hex');
const digests = (from: number, count: number): string[] => Array.from({ length: count }, (_, i) => digest(from + i));

async function storeWith(hexes: string[], pageSize = 1000): Promise<MemoryStore> {
  const s = new MemoryStore();
  s.pageSize = pageSize;
  for (const h of hexes) await s.put(blockKey('site', h), Buffer.from(h));
  await s.put('site/manifests/d-0000000000000000/s-0000000000000000.json', Buffer.from('{}')); // not a block
  return s;
}

t.test('an empty remote settles every wanted block with one listing page', async (t) => {
  const s = await storeWith([]);
  const wanted = digests(0, 200);
  const p = await listBlockPresence(s, 'site', wanted);
  t.equal(s.listPages, 1);
  t.same([...p.absent].sort(), [...wanted].sort());
  t.equal(p.present.size + p.unknown.size, 0);
});

t.test('present and absent blocks are told apart across pages', async (t) => {
  const there = digests(0, 60);
  const s = await storeWith([...there, ...digests(1000, 40)], 30);
  const wanted = [...there.slice(0, 30), ...digests(2000, 34)];
  const p = await listBlockPresence(s, 'site', wanted);
  t.same([...p.present].sort(), there.slice(0, 30).sort());
  t.same([...p.absent].sort(), digests(2000, 34).sort());
  t.equal(p.unknown.size, 0);
  t.ok(s.listPages <= Math.floor(wanted.length / PAGE_PER_BLOCKS), `${s.listPages} pages within the budget`);
});

t.test('a remote holding many other blocks: the listing stops at its budget and leaves the rest to HEADs', async (t) => {
  const s = await storeWith(digests(0, 3000), 10);
  const wanted = [...digests(0, 20), ...digests(5000, 20)];
  const p = await listBlockPresence(s, 'site', wanted);
  t.equal(s.listPages, Math.floor(wanted.length / PAGE_PER_BLOCKS));
  t.ok(p.unknown.size > 0, 'some left for HEADs');
  t.equal(p.present.size + p.absent.size + p.unknown.size, wanted.length, 'every wanted block in exactly one set');
  for (const h of p.present) t.ok(digests(0, 20).includes(h), 'present only if it is there');
  for (const h of p.absent) t.ok(digests(5000, 20).includes(h), 'absent only if it is not');
});
