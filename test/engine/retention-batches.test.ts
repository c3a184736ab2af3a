import t, { type Test } from 'tap';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import { fillBlock, writeAt } from '../helpers/images';
import { finished } from '../helpers/engine';
import { KiB64, openSmallEngine, smallDisk, type ModelFixture } from '../helpers/model';

const HOUR = 3_600_000;
const START = Date.parse('2027-03-01T00:00:00Z');

/**
 * Twelve automatic snapshots of disk `vm`, each after a change of one block (every fifth a block
 * zeroed), with a rollback to the third after the sixth: a chain that branches.
 */
async function history(f: ModelFixture): Promise<void> {
  const vm = await smallDisk(f, 'vm', 4);
  f.engine.policies.create({ name: 'p', hours: [1], retention: { keepLast: 1000 } });
  f.engine.policies.bind('p', ['vm']);
  const names: string[] = [];
  for (let k = 0; k < 12; k++) {
    if (k === 6) await finished(f.engine, f.engine.startRollback('vm', names[2]!));
    if (k % 5 === 4) writeAt(vm.path, (k % 4) * KiB64, Buffer.alloc(KiB64));
    else fillBlock(vm.path, k % 4, KiB64, `change-${k}`);
    const run = await f.engine.policies.run('p', new Date(START + k * HOUR));
    names.push(f.engine.getSnapshot(run.disks[0]!.snapshotId!).name);
  }
}

interface CatalogDump {
  heads: Array<[string, string | null]>;
  snapshots: Array<{ name: string; parent: string | null; delta: Array<[number, string | null]> }>;
  refs: Array<[string, number, number]>;
}

/** The catalog of a closed data dir, with names for ids: two engines' ids differ. */
function dump(dataDir: string): CatalogDump {
  const c = Catalog.open(dataDir, KiB64);
  try {
    const snaps = c.allSnapshots();
    const name = (id: string | null): string | null => snaps.find((s) => s.id === id)?.name ?? null;
    return {
      heads: c.allDisks().map((d) => [d.name, name(d.headSnapshotId)]),
      snapshots: snaps.map((s) => ({
        name: s.name, parent: name(s.parentId),
        delta: [...c.delta(s.id)].map((e): [number, string | null] => [e.index, e.digest?.toString('hex') ?? null]),
      })).sort((a, b) => a.name.localeCompare(b.name)),
      refs: [...c.referencedDigests()].map((d): [string, number, number] => [d.toString('hex'), c.refCount(d), c.refBytes(d)]).sort(),
    };
  } finally {
    void c.close();
  }
}

/** Each digest's reference count is the number of delta entries naming it: nothing leaked or lost. */
function refsMatchEntries(d: CatalogDump): boolean {
  const counted = new Map<string, number>();
  for (const s of d.snapshots) for (const [, digest] of s.delta) if (digest) counted.set(digest, (counted.get(digest) ?? 0) + 1);
  return d.refs.length === counted.size && d.refs.every(([digest, n]) => counted.get(digest) === n);
}

t.test('a retention that deletes in batches leaves the catalog that deleting one by one leaves', async (t) => {
  const batched = await openSmallEngine(t, { dir: t.testdir({ a: {}, b: {} }) + '/a', deleteBatch: 3 });
  const single = await openSmallEngine(t, { dir: join(batched.dataDir, '../../b') });
  await history(batched);
  await history(single);

  batched.engine.policies.update('p', { retention: { keepLast: 2 } });
  const run = (await batched.engine.policies.run('p', new Date(START + 12 * HOUR))).disks[0]!;
  t.equal(run.expired.length, 11, 'twelve old and one new, two kept: four batches of three at most');
  const left = new Set(batched.engine.listSnapshots('vm').map((s) => s.id));
  t.notOk(run.expired.some((id) => left.has(id)), 'each is gone');

  await single.engine.policies.run('p', new Date(START + 12 * HOUR));
  const byTime = single.engine.listSnapshots('vm').sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  for (const s of byTime.slice(0, 11)) await single.engine.deleteSnapshot(s.id);

  await batched.engine.close();
  await single.engine.close();
  const a = dump(batched.dataDir);
  t.same(a, dump(single.dataDir));
  t.equal(a.snapshots.length, 2);
  t.ok(refsMatchEntries(a));
});

/** `vm` with eight automatic snapshots under keep-last 1000, then keep-last 1: all eight expire. */
async function eightToExpire(t: Test): Promise<{ f: ModelFixture; old: Set<string> }> {
  const f = await openSmallEngine(t, { deleteBatch: 2 });
  const vm = await smallDisk(f, 'vm', 2);
  f.engine.policies.create({ name: 'p', hours: [1], retention: { keepLast: 1000 } });
  f.engine.policies.bind('p', ['vm']);
  for (let k = 0; k < 8; k++) {
    fillBlock(vm.path, k % 2, KiB64, `change-${k}`);
    await f.engine.policies.run('p', new Date(START + k * HOUR));
  }
  f.engine.policies.update('p', { retention: { keepLast: 1 } });
  return { f, old: new Set(f.engine.listSnapshots('vm').map((s) => s.id)) };
}

/** Calls `probe` with how many of `old` are left, once a turn of the event loop, until stopped. */
function everyTurn(f: ModelFixture, old: Set<string>, probe: (left: number) => void): () => void {
  let on = true;
  const turn = (): void => {
    if (!on) return;
    probe(f.engine.listSnapshots('vm').filter((s) => old.has(s.id)).length);
    setImmediate(turn);
  };
  setImmediate(turn);
  return () => { on = false; };
}

t.test('between batches of a retention\'s deletes the engine answers other requests', async (t) => {
  const { f, old } = await eightToExpire(t);
  const seen = new Set<number>();
  const stop = everyTurn(f, old, (left) => seen.add(left));
  const run = (await f.engine.policies.run('p', new Date(START + 8 * HOUR))).disks[0]!;
  stop();
  t.equal(run.expired.length, 8);
  t.ok([...seen].some((left) => left > 0 && left < 8), `a snapshot list answered mid-expiry: ${[...seen].join(', ')}`);
});

t.test('a stop between batches ends the run: its deletes committed, the rest whole, its event written', async (t) => {
  const { f, old } = await eightToExpire(t);
  let closing: Promise<void> | undefined;
  const stop = everyTurn(f, old, (left) => {
    if (left > 0 && left < 8 && !closing) closing = f.engine.close();
  });
  const run = (await f.engine.policies.run('p', new Date(START + 8 * HOUR))).disks[0]!;
  stop();
  await closing;
  t.ok(run.expired.length > 0 && run.expired.length < 8, `${run.expired.length} of 8 deleted before the stop`);
  const d = dump(f.dataDir);
  t.equal(d.snapshots.length, 9 - run.expired.length, 'the new one and those not deleted remain');
  t.ok(refsMatchEntries(d));
  const c = Catalog.open(f.dataDir, KiB64);
  t.teardown(() => c.close());
  const m = new ModelCatalog(c);
  t.same(m.allPolicies()[0]!.history.at(-1)?.expired, run.expired, 'the run\'s event lists what it deleted');
});

t.test('removing a disk with a branched chain of snapshots leaves none of its entries or references', async (t) => {
  const f = await openSmallEngine(t);
  await history(f);
  await f.engine.removeDisk('vm', { deleteSnapshots: true });
  await f.engine.close();
  t.same(dump(f.dataDir), { heads: [], snapshots: [], refs: [] });
});
