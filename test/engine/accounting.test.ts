/**
 * Snapshot accounting checked against an independent count: the test hashes the image's blocks
 * itself (node's SHA-256 over what it reads, no engine code) at every snapshot, and derives
 * logicalBytes, newBytes, uniqueBytes, a chain's stored bytes and the store totals from those sets.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync } from 'node:fs';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, pattern, writeAt } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

type View = Map<string, number>; // digest → raw bytes

/** The image's non-zero blocks, hashed here: one entry per block (duplicates included). */
function blocksOf(path: string): Array<[string, number]> {
  const data = readFileSync(path);
  const out: Array<[string, number]> = [];
  for (let off = 0; off < data.length; off += KiB64) {
    const block = data.subarray(off, Math.min(off + KiB64, data.length));
    if (block.every((b) => b === 0)) continue;
    out.push([createHash('sha256').update(block).digest('hex'), block.length]);
  }
  return out;
}

const bytesOf = (digests: Iterable<[string, number]>): number => [...digests].reduce((a, [, n]) => a + n, 0);

function union(views: View[]): View {
  const out: View = new Map();
  for (const v of views) for (const [d, n] of v) out.set(d, n);
  return out;
}

t.test('the product docs chain: 14 logical blocks, 6 stored', async (t) => {
  const f = await openSmallEngine(t);
  const d = await smallDisk(f, 'vm', 5);
  writeAt(d.path, 4 * KiB64, Buffer.alloc(KiB64)); // M N Q P, and a hole
  await snapshot(f.engine, d.id, 'V1');
  fillBlock(d.path, 4, KiB64, 'S');
  await snapshot(f.engine, d.id, 'V2');
  fillBlock(d.path, 1, KiB64, "N'");
  await snapshot(f.engine, d.id, 'V3');
  const [chain] = f.engine.listChains(d.id);
  t.equal(chain!.snapshots, 3);
  t.equal(chain!.logicalBytes, 14 * KiB64, '4 + 5 + 5 blocks');
  t.equal(chain!.storedBlocks, 6, '6 distinct blocks, not 14');
  t.equal(chain!.storedBytes, 6 * KiB64);
});

t.test('logical, new, unique and stored bytes match an independent count through dedup, branches and deletes', async (t) => {
  const f = await openSmallEngine(t);
  const size = 7 * KiB64 + 1000; // a short last block
  const a = await smallDisk(f, 'a', 8);
  const b = await smallDisk(f, 'b', 3);
  truncateSync(a.path, size);
  fillBlock(a.path, 7, KiB64, 'tail', 1000);
  fillBlock(a.path, 3, KiB64, 'a-0'); // the same content twice on one disk
  fillBlock(b.path, 1, KiB64, 'a-1'); // and once on another disk

  const live = new Map<string, View>(); // snapshot id → view, as counted here
  const take = async (disk: { id: string; path: string }, name: string): Promise<void> => {
    const blocks = blocksOf(disk.path);
    const view: View = new Map(blocks);
    const before = union([...live.values()]);
    const s = await snapshot(f.engine, disk.id, name);
    live.set(s.id, view);
    t.equal(s.logicalBytes, bytesOf(blocks), `${name}: logicalBytes (every non-zero block, duplicates too)`);
    t.equal(s.newBytes, bytesOf([...view].filter(([dg]) => !before.has(dg))), `${name}: newBytes`);
  };
  const check = async (label: string): Promise<void> => {
    for (const [id, view] of live) {
      const others = union([...live].filter(([o]) => o !== id).map(([, v]) => v));
      t.equal(f.engine.getSnapshot(id).uniqueBytes, bytesOf([...view].filter(([dg]) => !others.has(dg))), `${label}: uniqueBytes of ${f.engine.getSnapshot(id).name}`);
    }
    for (const disk of [a, b]) {
      const mine = f.engine.listSnapshots(disk.id).map((s) => live.get(s.id)!);
      const [chain] = f.engine.listChains(disk.id);
      t.equal(chain!.storedBytes, bytesOf(union(mine)), `${label}: stored bytes of ${disk.id === a.id ? 'a' : 'b'}`);
    }
    t.equal(f.engine.storeStats().bytes, bytesOf(union([...live.values()])), `${label}: store bytes`);
  };

  await take(a, 'a1');
  await take(b, 'b1');
  fillBlock(a.path, 0, KiB64, 'a-0 v2');
  writeAt(a.path, 2 * KiB64, Buffer.alloc(KiB64)); // written zeros: ZERO, not stored
  await take(a, 'a2');
  fillBlock(a.path, 5, KiB64, 'a-5 v3');
  writeAt(a.path, 6 * KiB64 + 10, pattern('poke', 100));
  await take(a, 'a3');
  await check('linear chain');

  // Roll back to a1 and branch from there.
  await finished(f.engine, f.engine.startRollback(a.id, 'a1'));
  fillBlock(a.path, 4, KiB64, 'branch');
  await take(a, 'a4');
  await check('after a branch');

  // Delete from the middle: the deleted snapshot's count leaves, its children's views stay.
  for (const name of ['a2', 'a1']) {
    const s = f.engine.getSnapshot(name);
    const stored = f.engine.storeStats().bytes;
    await f.engine.deleteSnapshot(s.id);
    live.delete(s.id);
    t.equal(stored - f.engine.storeStats().bytes, s.uniqueBytes, `deleting ${name} freed exactly its uniqueBytes`);
    await check(`after deleting ${name}`);
  }
});
