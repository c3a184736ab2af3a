/**
 * Replication, restore, import and remote gc against a shared in-memory bucket with injected
 * faults: damaged remote objects, failed and cancelled uploads, large listings, several hosts.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { lookupMethod, type CallContext } from '../../src/daemon/methods';
import { StreamChannels } from '../../src/daemon/stream-channels';
import { BlocksnapError } from '../../src/errors';
import type { LeaseTiming } from '../../src/remote/leases';
import { decodeManifest, encodeManifest } from '../../src/remote/manifest';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, sha256File } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { MemoryStore } from './memory-store';
import { isBlockKey, isLeaseKey, openHost, replicate, sleep, type Host } from './memory-engine';

const timing: LeaseTiming = { ttlMs: 600, skewMs: 100, waitMs: 5000, pollMs: 20 };

/** Blocks in a data dir's store. */
function countBlocks(dataDir: string): number {
  let n = 0;
  const dir = join(dataDir, 'blocks');
  for (const d of readdirSync(dir)) { try { n += readdirSync(join(dir, d)).filter((f) => /^[0-9a-f]{64}$/.test(f)).length; } catch { /* file */ } }
  return n;
}

/** Restores a remote snapshot to a new raw file on the host and returns the file's SHA-256. */
async function restoredDigest(h: Host, snapshotId: string): Promise<string> {
  const out = join(h.images, `r-${snapshotId}.raw`);
  await finished(h.engine, h.engine.offsite.remoteRestore.startRestore('off', snapshotId, out));
  return sha256File(out);
}

t.test('a damaged, truncated or missing block or manifest, or one of another version, fails import and restore with RemoteCorrupt, leaving nothing', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const d = await a.disk('vm', 6);
  const s = await snapshot(a.engine, d.id);
  await replicate(a, s.id);
  const mkey = `site/manifests/${d.id}/${s.id}.json`;
  const good = shared.objects.get(mkey)!.body;
  const blocks = [...shared.objects.keys()].filter(isBlockKey);
  const b = await openHost(t, shared);
  const target = await b.disk('t', 6);
  const before = countBlocks(b.dataDir);
  const out = join(b.images, 'r.raw');
  const outq = join(b.images, 'r.qcow2');
  const check = async (what: string, code: string) => {
    t.match(await b.engine.waitJob(b.engine.offsite.remoteRestore.startImport('off', s.id, target.id).id), { state: 'failed', error: { code } }, `${what}: import`);
    t.same(b.engine.listSnapshots(target.id), []);
    t.match(await b.engine.waitJob(b.engine.offsite.remoteRestore.startRestore('off', s.id, out).id), { state: 'failed', error: { code } }, `${what}: restore`);
    t.notOk(existsSync(out));
    t.match(await b.engine.waitJob(b.engine.offsite.remoteRestore.startRestore('off', s.id, outq, { format: 'qcow2' }).id), { state: 'failed', error: { code } }, `${what}: restore qcow2`);
    t.notOk(existsSync(outq));
    for (let i = 0; i < 100 && countBlocks(b.dataDir) !== before; i++) await sleep(20);
    t.equal(countBlocks(b.dataDir), before, `${what}: no blocks left`);
    t.same(readdirSync(b.images).filter((f) => f !== 't.raw'), [], 'no partial files');
  };
  // damaged block (last one)
  const k = blocks[blocks.length - 1]!;
  const orig = shared.objects.get(k)!.body;
  const bad = Buffer.from(orig); bad[10] ^= 1;
  shared.objects.get(k)!.body = bad;
  await check('damaged block', 'RemoteCorrupt');
  shared.objects.get(k)!.body = orig.subarray(0, orig.length - 1);
  await check('truncated block', 'RemoteCorrupt');
  shared.objects.delete(k);
  await check('missing block', 'RemoteCorrupt');
  shared.objects.set(k, { body: orig, lastModified: new Date() });
  shared.objects.get(mkey)!.body = good.subarray(0, good.length - 20);
  await check('truncated manifest', 'RemoteCorrupt');
  const m = decodeManifest(good, mkey);
  const v2 = JSON.parse(encodeManifest(m).toString());
  v2.version = 2;
  shared.objects.get(mkey)!.body = Buffer.from(JSON.stringify(v2));
  await check('v2 manifest', 'RemoteCorrupt');
  shared.objects.get(mkey)!.body = good;
  await finished(b.engine, b.engine.offsite.remoteRestore.startImport('off', s.id, target.id));
  await finished(b.engine, b.engine.offsite.remoteRestore.startRestore('off', s.id, out));
  t.equal(await sha256File(out), await sha256File(d.path));
});

t.test('an incremental whose base was deleted and collected on the remote uploads every block again', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const d = await a.disk('vm', 8);
  const s1 = await snapshot(a.engine, d.id);
  await replicate(a, s1.id);
  fillBlock(d.path, 2, KiB64, 'x');
  const s2 = await snapshot(a.engine, d.id);
  await a.engine.offsite.replication.deleteRemoteSnapshot('off', s1.id);
  await finished(a.engine, a.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }));
  t.equal([...shared.objects.keys()].filter(isBlockKey).length, 0);
  const r = await replicate(a, s2.id);
  t.match(r, { uploadedBlocks: 8 });
  t.equal(await restoredDigest(a, s2.id), await sha256File(d.path));
});

t.test('a replication failing mid-upload leaves no manifest and no lease; a rerun uploads only the rest', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const d = await a.disk('vm', 40);
  const s1 = await snapshot(a.engine, d.id);
  let n = 0;
  a.store.hook = (op, key) => { if (op === 'put' && isBlockKey(key) && ++n === 5) throw new BlocksnapError('RemoteError', 'boom'); };
  const job = await a.engine.waitJob(a.engine.offsite.replication.startReplicate(s1.id, 'off').id);
  t.match(job, { state: 'failed', error: { code: 'RemoteError' } });
  t.notOk([...shared.objects.keys()].some((k) => k.includes('/manifests/')));
  await a.engine.offsite.replication.settleReleases();
  t.same([...shared.objects.keys()].filter(isLeaseKey), []);
  a.store.hook = () => undefined;
  const have = [...shared.objects.keys()].filter(isBlockKey).length;
  const r = await replicate(a, s1.id);
  t.equal(r.uploadedBlocks, 40 - have);
  t.equal(await restoredDigest(a, s1.id), await sha256File(d.path));
});

t.test('a replication cancelled mid-upload stops at once, without a manifest', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const d = await a.disk('vm', 40);
  const s1 = await snapshot(a.engine, d.id);
  a.store.hook = async (op, key) => { if (op === 'put' && isBlockKey(key)) await sleep(100); };
  const job = a.engine.offsite.replication.startReplicate(s1.id, 'off');
  await sleep(250);
  const t0 = Date.now();
  a.engine.cancelJob(job.id);
  const done = await a.engine.waitJob(job.id);
  t.match(done, { state: 'cancelled' });
  t.ok(Date.now() - t0 < 2000, `stopped after ${Date.now() - t0} ms`);
  t.notOk([...shared.objects.keys()].some((k) => k.includes('/manifests/')));
});

t.test('gc deletes thousands of orphan blocks in batches of at most 1000 and keeps the referenced ones', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const old = new Date(Date.now() - 7_200_000);
  for (let i = 0; i < 2500; i++) {
    const hex = createHash('sha256').update(`o${i}`).digest('hex');
    shared.objects.set(`site/blocks/${hex.slice(0, 3)}/${hex}`, { body: Buffer.from(`o${i}`), lastModified: old });
  }
  const d = await a.disk('vm', 4);
  const s1 = await snapshot(a.engine, d.id);
  await replicate(a, s1.id);
  for (const [k, o] of shared.objects) if (isBlockKey(k)) o.lastModified = old;
  let maxBatch = 0;
  const del = shared.deleteMany.bind(shared);
  shared.deleteMany = async (keys) => { maxBatch = Math.max(maxBatch, keys.length); await del(keys); };
  const gc = await finished(a.engine, a.engine.offsite.remoteGc.startRemoteGc('off'));
  t.match(gc.result, { deletedBlocks: 2500, keptBlocks: 4 });
  t.ok(maxBatch <= 1000);
  t.equal(await restoredDigest(a, s1.id), await sha256File(d.path));
});

t.test('two hosts replicating, one of them the same snapshot twice, beside a gc on a third: every snapshot restores', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const b = await openHost(t, shared, { leaseTiming: timing });
  const c = await openHost(t, shared, { leaseTiming: timing });
  const da = await a.disk('vm', 20);
  const db = await b.disk('vm', 20);
  const sa = await snapshot(a.engine, da.id);
  const sb = await snapshot(b.engine, db.id);
  for (const h of [a, b, c]) h.store.hook = async () => { await sleep(Math.random() * 3); };
  const jobs = [
    a.engine.waitJob(a.engine.offsite.replication.startReplicate(sa.id, 'off').id),
    b.engine.waitJob(b.engine.offsite.replication.startReplicate(sb.id, 'off').id),
    a.engine.waitJob(a.engine.offsite.replication.startReplicate(sa.id, 'off').id),
    c.engine.waitJob(c.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }).id),
  ];
  const res = await Promise.all(jobs);
  t.same(res.map((j) => j.state), ['succeeded', 'succeeded', 'succeeded', 'succeeded']);
  await finished(c.engine, c.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }));
  for (const [h, s, d] of [[a, sa, da], [b, sb, db]] as const) {
    const out = join(h.images, 'r.raw');
    await finished(h.engine, h.engine.offsite.remoteRestore.startRestore('off', s.id, out));
    t.equal(await sha256File(out), await sha256File(d.path));
  }
});

t.test('a manifest overwritten with garbage is listed as damaged, stops gc naming it and the command that removes it, and remote delete --force removes it', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const d = await a.disk('vm', 4);
  const s1 = await snapshot(a.engine, d.id, 'one');
  fillBlock(d.path, 2, KiB64, 'changed-2');
  const s2 = await snapshot(a.engine, d.id, 'two');
  await replicate(a, d.id);
  const k1 = `site/manifests/${d.id}/${s1.id}.json`;
  shared.objects.get(k1)!.body = Buffer.from('\u0000garbage, not a manifest');
  for (const [k, o] of shared.objects) if (isBlockKey(k)) o.lastModified = new Date(Date.now() - 7_200_000);
  const rep = a.engine.offsite.replication;

  const listed = await rep.remoteSnapshots('off');
  t.match(listed, [
    { id: s2.id, name: 'two', damaged: null },
    { id: s1.id, diskId: d.id, key: k1, name: null, createdAt: null, damaged: { code: 'RemoteCorrupt', message: /is not valid JSON/ } },
  ], 'the listing shows the damaged one by what its key says, after the others');
  t.same((await rep.remoteSnapshots('off', 'vm')).map((s) => s.id), [s2.id, s1.id], 'also when asked by the disk\'s name');
  const ctx: CallContext = {
    engine: a.engine, info: { version: 'test', build: 'test', pid: process.pid, startedAt: '' }, watch() {}, unwatch() {}, channels: new StreamChannels(() => undefined), peerUid: process.getuid!(),
  };
  const listOnWire = (params: Record<string, unknown>): Promise<unknown> => lookupMethod('remote.snapshots')!.call(ctx, { remote: 'off', ...params });
  t.match(await listOnWire({ damaged: true }), [{ id: s2.id }, { id: s1.id, damaged: { code: 'RemoteCorrupt' } }], 'on the wire, to a client that asks for damaged entries');
  await t.rejects(listOnWire({}), { code: 'RemoteCorrupt', message: new RegExp(s1.id), details: { snapshots: [s1.id] } },
    'a client that does not ask gets no entry with null fields, but the error it always got');

  const gc = await a.engine.waitJob(a.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }).id);
  t.match(gc, { state: 'failed', error: { code: 'RemoteCorrupt' } });
  t.match(gc.error!.message, s1.id, 'gc names the damaged snapshot');
  t.match(gc.error!.message, `blocksnap remote delete off ${s1.id} --force`, 'and the command that removes it');
  t.equal([...shared.objects.keys()].filter(isBlockKey).length, 5, 'gc deleted nothing');

  await t.rejects(rep.deleteRemoteSnapshot('off', s1.id), { code: 'RemoteCorrupt', message: /--force/ }, 'without --force the damaged manifest stays');
  t.ok(shared.objects.has(k1));
  await t.rejects(rep.deleteRemoteSnapshot('off', 'one', { force: true }), { code: 'RemoteCorrupt', message: new RegExp(s1.id) },
    'a name cannot be resolved past a damaged manifest, which may carry it');
  const deleted = await rep.deleteRemoteSnapshot('off', s1.id, { force: true });
  t.match(deleted, { id: s1.id, diskId: d.id, key: k1, damaged: { code: 'RemoteCorrupt' } });
  t.notOk(shared.objects.has(k1), 'the manifest object is gone');
  t.same((await rep.remoteSnapshots('off')).map((s) => s.id), [s2.id]);

  const after = await finished(a.engine, a.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }));
  t.match(after.result, { manifests: 1, deletedBlocks: 1, keptBlocks: 4 }, 'only the block no other manifest names is freed');
  t.equal(await restoredDigest(a, s2.id), await sha256File(d.path), 'the other snapshot restores');
});
