/**
 * remote verify: damage in the bucket is found by reading every block a remote snapshot
 * references, and with --repair a host that holds the good block uploads it again, under a
 * writer lease, so that the snapshot restores. Engines on one in-memory bucket (memory-engine.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { RemoteVerifyResult } from '../../src/engine/offsite-types';
import type { VerifyResult } from '../../src/engine/types';
import type { LeaseTiming } from '../../src/remote/leases';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, pattern, sha256File } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { stalledSender } from '../helpers/stalled-sender';
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

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
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

/** Two snapshots of one 8-block disk, the second with block 0 rewritten: they share the other 7 blocks. */
async function twoSnapshots(h: Host): Promise<{ first: string; second: string }> {
  const d = await h.disk('vm', 8);
  const first = await snapshot(h.engine, d.id);
  fillBlock(d.path, 0, KiB64, 'vm-0-again');
  const second = await snapshot(h.engine, d.id);
  await replicate(h, first.id);
  await replicate(h, second.id);
  return { first: first.id, second: second.id };
}

t.test('manifests are read one at a time, each block checked under the first that names it, once', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  await twoSnapshots(a);
  const reads: string[] = [];
  a.store.hook = (op, key) => { if (op === 'get') reads.push(key); };
  const r = await verify(a);
  const blocks = reads.filter(isBlockKey);
  t.equal(blocks.length, new Set(blocks).size, 'no block is read twice');
  t.equal(r.checkedBlocks, 9, '8 blocks, and the one the second snapshot rewrote');
  const runs = reads.map((k) => (isBlockKey(k) ? 'block' : 'manifest')).filter((kind, i, all) => i === 0 || all[i - 1] !== kind);
  t.same(runs, ['manifest', 'block', 'manifest', 'block'], 'the second manifest is read once the first one\'s blocks are checked');
});

t.test('a damaged block two snapshots share is reported once, with both', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const s = await twoSnapshots(a);
  const sharedKey = [...shared.objects.keys()].filter(isBlockKey).sort().find((k) => k.endsWith(createHash('sha256').update(pattern('vm-7', KiB64)).digest('hex')))!;
  flipBit(shared, sharedKey);
  const r = await verify(a);
  t.same(r.problems.map((p) => [p.key, p.problem, [...p.snapshots].sort()]), [[sharedKey, 'damaged', [s.first, s.second].sort()]]);
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

/**
 * Host `a` busy as in the field: an import of a stream from another host whose sender stalls in
 * its last block holds a's store lock, and a gc queued behind it keeps every new shared holder
 * waiting. `free()` lets both finish.
 */
async function lockHeldBehindGc(t: Test, shared: MemoryStore, a: Host): Promise<{ free(): Promise<void> }> {
  const other = await openHost(t, shared);
  await other.disk('src', 8);
  const sent = await snapshot(other.engine, 'src');
  await finished(other.engine, other.engine.offsite.streams.startExport(sent.id, join(other.images, 'src.bsnap')));
  const bytes = readFileSync(join(other.images, 'src.bsnap'));
  const into = await a.disk('in', 8);
  const sender = stalledSender(bytes, bytes.length - 1000);
  const imp = a.engine.offsite.streams.startImport(sender.channel, into.id);
  await until(() => a.engine.getJob(imp.id).doneBytes === 7 * 64 * 1024);
  const gc = a.engine.startGc();
  return {
    async free() {
      sender.resume();
      await finished(a.engine, imp);
      await finished(a.engine, gc);
    },
  };
}

/** Until the job has checked every remote block: what is left is reading this host's copies. */
async function checkedAll(h: Host, jobId: string): Promise<void> {
  await until(() => { const j = h.engine.getJob(jobId); return j.totalBytes > 0 && j.doneBytes === j.totalBytes; });
}

t.test('a repair reads its local blocks before it takes the writer lease, so waiting for the store lock holds no lease', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const s = await replicated(a, shared);
  flipBit(shared, s.keys[0]!);
  const busy = await lockHeldBehindGc(t, shared, a);
  const leasePuts: string[] = [];
  a.store.hook = (op, key) => { if (op === 'put' && isLeaseKey(key)) leasePuts.push(key); };
  const job = a.engine.offsite.remoteVerify.startRemoteVerify('off', s.id, { repair: true });
  await checkedAll(a, job.id);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(a.engine.getJob(job.id).state, 'running', 'the repair waits for the store lock');
  t.same(leasePuts, [], 'and holds no writer lease meanwhile');
  await busy.free();
  const r = (await finished(a.engine, job)).result as RemoteVerifyResult;
  t.same(r.problems.map((p) => p.repaired), [true]);
  t.ok(leasePuts.length > 0, 'the lease was taken for the upload');
  t.same([...shared.objects.keys()].filter(isLeaseKey), [], 'and given back');
});

t.test('a repair cancelled while it waits for the store lock ends at once and leaves no lease', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const s = await replicated(a, shared);
  flipBit(shared, s.keys[0]!);
  const busy = await lockHeldBehindGc(t, shared, a);
  const job = a.engine.offsite.remoteVerify.startRemoteVerify('off', s.id, { repair: true });
  await checkedAll(a, job.id);
  a.engine.cancelJob(job.id);
  t.match(await a.engine.waitJob(job.id), { state: 'cancelled', error: { message: /while waiting for the store lock/ } });
  t.same([...shared.objects.keys()].filter(isLeaseKey), [], 'no lease left in the bucket');
  await busy.free();
});
