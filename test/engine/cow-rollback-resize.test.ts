/**
 * A copy-on-write disk rolled back to a snapshot of another size (one imported under the disk
 * from a stream) takes that size: its volume serves it, its flatten and clones read exactly the
 * snapshot, and a snapshot taken afterwards restores.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { Catalog } from '../../src/catalog/catalog';
import type { RollbackResult, Snapshot } from '../../src/engine/types';
import { cloned, readAll, served } from '../helpers/cow';
import { finished, importedUnder, openEngine, snapshot } from '../helpers/engine';
import { randomData } from '../helpers/images';

const BS = 64 * 1024;

/**
 * A COW disk `c` of a `from`-byte snapshot, and a `to`-byte snapshot imported under `c` from a
 * stream (its own disk's snapshot was deleted after the export, so the import adds it anew).
 */
async function cowWithImported(t: Test, from: number, to: number) {
  const f = await openEngine(t, { blockSize: BS });
  const fromBytes = randomData(from);
  const toBytes = randomData(to);
  writeFileSync(join(f.images, 'from.raw'), fromBytes);
  writeFileSync(join(f.images, 'to.raw'), toBytes);
  await f.engine.addDisk({ path: join(f.images, 'from.raw'), name: 'from' });
  await f.engine.addDisk({ path: join(f.images, 'to.raw'), name: 'to' });
  await snapshot(f.engine, 'from', 'f1');
  await snapshot(f.engine, 'to', 't1');
  await f.engine.cloneCow('f1', 'c');
  const target = await importedUnder(f, 't1', 'c');
  return { ...f, fromBytes, toBytes, target };
}

const pairs = [
  ['bigger to smaller', 2 * BS + 4321, BS + 100],
  ['bigger to smaller in as many blocks', 2 * BS + 4321, 2 * BS + 100],
  ['smaller to bigger', 1, 3 * BS + 7],
] as const;

for (const [label, from, to] of pairs) {
  t.test(`rolled back from ${label}, the disk takes the snapshot's size and reads as it`, async (t) => {
    const { engine, images, toBytes, target } = await cowWithImported(t, from, to);
    const job = await finished(engine, engine.startRollback('c', target.id));
    t.match(job.result as RollbackResult, { sizeBytes: to, previousSizeBytes: from });
    t.equal(engine.getDisk('c').sizeBytes, to);
    const b = await served(engine, 'c');
    t.equal(b.size, to, 'the export serves the snapshot\'s size');
    t.ok((await readAll(b)).equals(toBytes), 'reads equal the snapshot');
    await finished(engine, engine.startFlatten('c', join(images, 'flat.raw')));
    t.ok(readFileSync(join(images, 'flat.raw')).equals(toBytes), 'the flatten equals the snapshot');
  });

  t.test(`a snapshot taken after a rollback from ${label} restores what was written since`, async (t) => {
    const { engine, images, toBytes, target } = await cowWithImported(t, from, to);
    await finished(engine, engine.startRollback('c', target.id));
    const b = await served(engine, 'c');
    const tail = Buffer.from('tail');
    await b.write!(to - tail.length, tail, true);
    const after: Snapshot = await snapshot(engine, 'c', 'after');
    t.equal(after.sizeBytes, to);
    const expected = Buffer.concat([toBytes.subarray(0, to - tail.length), tail]);
    t.ok((await cloned(engine, images, after, 'after.raw')).equals(expected), 'the snapshot clones to the disk as written');
  });
}

t.test('a rollback to another size refuses reads past the new end of a shrunk disk', async (t) => {
  const { engine, target } = await cowWithImported(t, 2 * BS + 4321, BS + 100);
  const b = await served(engine, 'c');
  await finished(engine, engine.startRollback('c', target.id));
  await t.rejects(b.readInto(BS, 200, Buffer.alloc(200), 0), { code: 'InvalidArgument' });
});

t.test('a rollback to another size drops again the clients its export has once it serves the new size', async (t) => {
  const { engine, target } = await cowWithImported(t, 1, 3 * BS + 7);
  await served(engine, 'c');
  const name = engine.exports.list().find((e) => e.diskId === engine.getDisk('c').id)!.name;
  // A client that stays connected through the forced drop stands for one that connected during
  // the rollback: it negotiated the old size.
  const reasons: string[] = [];
  const table = engine.exports as unknown as { entries: Map<string, { conns: Set<{ close(reason: string): Promise<void> }> }> };
  table.entries.get(name)!.conns.add({ close: async (reason) => { reasons.push(reason); } });
  await finished(engine, engine.startRollback('c', target.id, { force: true }));
  t.same(reasons, ['the disk was rolled back (forced)', 'the disk was rolled back to a snapshot of another size']);
  t.equal(engine.exports.list().find((e) => e.name === name)!.sizeBytes, 3 * BS + 7, 'the export lists the new size');
});

t.test('a snapshot of a COW disk whose size is not its base snapshot\'s is refused, not committed', async (t) => {
  const { engine } = await cowWithImported(t, 2 * BS + 4321, BS + 100);
  const catalog = (engine as unknown as { catalog: Catalog }).catalog;
  const base = catalog.getSnapshot(engine.getDisk('c').cow!.baseSnapshotId)!;
  // As many blocks, another tail: the base's tail block is not the length the disk's size says.
  catalog.txn(() => catalog.putSnapshot({ ...base, sizeBytes: 2 * BS + 100 }));
  const job = await engine.waitJob(engine.startSnapshot('c', { name: 'wrong' }).id);
  t.equal(job.error?.code, 'Internal');
  t.match(job.error?.message, /recorded as 135393 bytes, its base snapshot \S+ as 131172 bytes/);
  t.notOk(engine.listSnapshots().some((s) => s.name === 'wrong' && s.status === 'available'), 'no snapshot is available');
});
