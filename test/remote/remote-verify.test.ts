/**
 * remote verify: damage in the bucket is found by reading every block a remote snapshot
 * references, and with --repair a host that holds the good block uploads it again, under a
 * writer lease, so that the snapshot restores. Engines on one in-memory bucket (memory-engine.ts).
 */
import { join } from 'node:path';
import t from 'tap';
import type { RemoteVerifyResult } from '../../src/engine/offsite-types';
import type { VerifyResult } from '../../src/engine/types';
import type { LeaseTiming } from '../../src/remote/leases';
import { finished, snapshot } from '../helpers/engine';
import { sha256File } from '../helpers/images';
import { MemoryStore } from './memory-store';
import { isBlockKey, isLeaseKey, openHost, replicate, type Host } from './memory-engine';

const timing: LeaseTiming = { ttlMs: 600, skewMs: 100, waitMs: 5000, pollMs: 20 };

async function verify(h: Host, o: { snapshot?: string; repair?: boolean } = {}): Promise<RemoteVerifyResult> {
  const job = await finished(h.engine, h.engine.offsite.remoteVerify.startRemoteVerify('off', o.snapshot, o.repair ? { repair: true } : {}));
  return job.result as RemoteVerifyResult;
}

/** A replicated snapshot of an 8-block disk, and the keys of its blocks on the remote. */
async function replicated(h: Host, shared: MemoryStore): Promise<{ id: string; path: string; keys: string[] }> {
  const d = await h.disk('vm', 8);
  const s = await snapshot(h.engine, d.id);
  await replicate(h, s.id);
  return { id: s.id, path: d.path, keys: [...shared.objects.keys()].filter(isBlockKey).sort() };
}

function flipBit(shared: MemoryStore, key: string): void {
  const o = shared.objects.get(key)!;
  const body = Buffer.from(o.body);
  body[0]! ^= 0x01;
  o.body = body;
}

t.test('an intact remote verifies clean', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const s = await replicated(a, shared);
  t.match(await verify(a), { remote: 'off', snapshots: 1, checkedBlocks: s.keys.length, problems: [], damagedManifests: [] });
});

t.test('a block with a flipped bit and a lost block are reported with the snapshots that need them', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const s = await replicated(a, shared);
  flipBit(shared, s.keys[0]!);
  shared.objects.delete(s.keys[1]!);
  const r = await verify(a, { snapshot: s.id });
  t.same(r.problems.map((p) => [p.key, p.problem, p.snapshots, p.repaired]), [
    [s.keys[0], 'damaged', [s.id], false],
    [s.keys[1], 'missing', [s.id], false],
  ]);
});

t.test('with repair, a host that holds the blocks uploads them again and the snapshot restores', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const s = await replicated(a, shared);
  flipBit(shared, s.keys[0]!);
  shared.objects.delete(s.keys[1]!);
  const out = join(a.images, 'restored.raw');
  const failed = await a.engine.waitJob(a.engine.offsite.remoteRestore.startRestore('off', s.id, out).id);
  t.match(failed, { state: 'failed', error: { code: 'RemoteCorrupt', message: /blocksnap remote verify off s-[0-9a-f]{16} --repair/ } }, 'the restore names the way out');
  const r = await verify(a, { repair: true });
  t.same(r.problems.map((p) => p.repaired), [true, true]);
  t.same((await verify(a)).problems, [], 'clean afterwards');
  await finished(a.engine, a.engine.offsite.remoteRestore.startRestore('off', s.id, out));
  t.equal(await sha256File(out), await sha256File(s.path));
  t.same([...shared.objects.keys()].filter(isLeaseKey), [], 'its writer lease is gone');
});

t.test('a host without the block reports it unrepaired and records no local damage', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const b = await openHost(t, shared);
  const s = await replicated(a, shared);
  flipBit(shared, s.keys[0]!);
  const r = await verify(b, { repair: true });
  t.same(r.problems.map((p) => [p.key, p.repaired]), [[s.keys[0], false]]);
  const local = (await finished(b.engine, b.engine.startVerify())).result as VerifyResult;
  t.equal(local.awaitingRepair, 0, 'a block this host never had is not damage of its store');
});

t.test('a repair waits while a gc of another host holds its lease, and uploads once it has ended', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const b = await openHost(t, shared, { leaseTiming: timing });
  const s = await replicated(a, shared);
  flipBit(shared, s.keys[0]!);
  // The gc holds on between mark and sweep until the repair has tried to take its writer lease.
  let writerTried!: () => void;
  const tried = new Promise<void>((r) => { writerTried = r; });
  let gcEnded = false;
  b.store.hook = async (op, key) => {
    if (op === 'list' && key === 'site/blocks/') await tried;
    if (op === 'delete' && key.includes('/leases/gc.')) gcEnded = true;
  };
  const blockPuts: boolean[] = [];
  a.store.hook = (op, key) => {
    if (op === 'put' && key.includes('/leases/writer.')) writerTried();
    if (op === 'put' && isBlockKey(key)) blockPuts.push(gcEnded);
  };
  const gc = b.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 3600 });
  const r = (await finished(a.engine, a.engine.offsite.remoteVerify.startRemoteVerify('off', s.id, { repair: true }))).result as RemoteVerifyResult;
  await finished(b.engine, gc);
  t.same(blockPuts, [true], 'the block went up after the gc had ended');
  t.same(r.problems.map((p) => p.repaired), [true]);
});
