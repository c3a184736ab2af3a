/**
 * Shared-bucket hazards between hosts, through engines on one in-memory bucket: leases that lapse
 * and come back, lease objects left behind, manifests in the wrong place, nested prefixes.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BlocksnapError } from '../../src/errors';
import type { LeaseTiming } from '../../src/remote/leases';
import { snapshot, finished } from '../helpers/engine';
import { fillBlock, sha256File } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { MemoryStore } from './memory-store';
import { isBlockKey, isLeaseKey, openHost, replicate, sleep } from './memory-engine';

const timing: LeaseTiming = { ttlMs: 600, skewMs: 100, waitMs: 5000, pollMs: 20 };

t.test('a gc whose lease lapsed and was renewed again stops before sweeping: a writer may have relied on blocks it marked as garbage', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const b = await openHost(t, shared, { leaseTiming: timing });
  const d = await b.disk('vm', 8);
  const s = await snapshot(b.engine, d.id);
  await replicate(b, s.id);
  // The snapshot's blocks are left over on the remote, unreferenced and long past the grace.
  await b.engine.offsite.replication.deleteRemoteSnapshot('off', s.id);
  for (const [k, o] of shared.objects) if (isBlockKey(k)) o.lastModified = new Date(Date.now() - 7_200_000);

  let renewals = true;
  a.store.hook = async (op, key) => {
    if (op === 'put' && key.includes('/leases/gc.') && !renewals) throw new BlocksnapError('RemoteUnreachable', 'no route to the store');
    if (op === 'list' && key === 'site/blocks/') {
      // Between mark and sweep the gc cannot renew its lease for longer than its lifetime: to
      // other hosts it is dead, and a writer goes ahead, finding the blocks there.
      renewals = false;
      await sleep(timing.ttlMs + timing.skewMs + 200);
      const r = await replicate(b, s.id);
      t.match(r, { replicated: [s.id], uploadedBlocks: 0 }, 'the writer found every block there');
      renewals = true;
      await sleep(timing.ttlMs / 2); // the gc's lease is renewed again
    }
  };
  const gc = await a.engine.waitJob(a.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 60 }).id);
  t.match(gc, { state: 'failed', error: { code: 'RemoteBusy' } }, 'the gc stops: its mark may miss manifests written meanwhile');
  const out = join(b.images, 'restored.raw');
  await finished(b.engine, b.engine.offsite.remoteRestore.startRestore('off', s.id, out));
  t.equal(await sha256File(out), await sha256File(d.path), 'the manifest written meanwhile restores');
});

t.test('a replication that fails while its lease is being taken leaves no lease behind', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const d = await a.disk('vm', 8);
  await replicate(a, (await snapshot(a.engine, d.id)).id);
  const data = fillBlock(d.path, 4, KiB64, 'changed-4');
  const s2 = await snapshot(a.engine, d.id);
  const hex = createHash('sha256').update(data).digest('hex');
  const file = join(a.dataDir, 'blocks', hex.slice(0, 3), hex);
  const damaged = readFileSync(file);
  damaged[damaged.length - 1] ^= 0x01;
  writeFileSync(file, damaged);
  // The lease is put, and its listing is slow: the damaged block's early upload fails first.
  let listed!: () => void;
  const held = new Promise<void>((r) => { listed = r; });
  a.store.hook = async (op, key) => { if (op === 'list' && key === 'site/leases/') await held; };
  const job = await a.engine.waitJob(a.engine.offsite.replication.startReplicate(s2.id, 'off').id);
  t.match(job, { state: 'failed', error: { code: 'DigestMismatch' } });
  listed();
  await a.engine.offsite.replication.settleReleases();
  t.same([...shared.objects.keys()].filter(isLeaseKey), [], 'no lease for gcs to wait out');
});

t.test('a manifest under another snapshot\'s key is RemoteCorrupt to restore and import, which write and commit nothing', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const d = await a.disk('vm', 4);
  const s1 = await snapshot(a.engine, d.id, 'one');
  fillBlock(d.path, 1, KiB64, 'changed-1');
  const s2 = await snapshot(a.engine, d.id, 'two');
  await replicate(a, d.id);
  // s2's manifest, whole and valid, copied over s1's key.
  const k1 = `site/manifests/${d.id}/${s1.id}.json`;
  shared.objects.get(k1)!.body = shared.objects.get(`site/manifests/${d.id}/${s2.id}.json`)!.body;
  const b = await openHost(t, shared);
  const target = await b.disk('target', 4);
  const out = join(b.images, 'restored.raw');
  t.match(await b.engine.waitJob(b.engine.offsite.remoteRestore.startRestore('off', s1.id, out).id),
    { state: 'failed', error: { code: 'RemoteCorrupt', message: /not the one its key names/ } }, 'restore');
  t.notOk(existsSync(out), 'no file');
  t.match(await b.engine.waitJob(b.engine.offsite.remoteRestore.startImport('off', s1.id, target.id).id),
    { state: 'failed', error: { code: 'RemoteCorrupt', message: /not the one its key names/ } }, 'import');
  t.same(b.engine.listSnapshots(target.id), [], 'no snapshot');
});

t.test('a gc sweeps only its own prefix\'s blocks, not those of a remote whose prefix lies under its blocks/', async (t) => {
  const shared = new MemoryStore();
  const outer = await openHost(t, shared);
  const inner = await openHost(t, shared, { prefix: 'site/blocks' });
  const d = await inner.disk('vm', 4);
  const s = await snapshot(inner.engine, d.id);
  await replicate(inner, s.id);
  for (const o of shared.objects.values()) o.lastModified = new Date(Date.now() - 7_200_000);
  const gc = await finished(outer.engine, outer.engine.offsite.remoteGc.startRemoteGc('off'));
  t.match(gc.result, { deletedBlocks: 0 });
  const out = join(inner.images, 'restored.raw');
  await finished(inner.engine, inner.engine.offsite.remoteRestore.startRestore('off', s.id, out));
  t.equal(await sha256File(out), await sha256File(d.path), 'the other remote\'s snapshot still restores');
});

t.test('a block upload still under way when the writer lease can no longer be renewed is aborted, not landed', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared, { leaseTiming: timing });
  const d = await a.disk('vm', 8);
  const s = await snapshot(a.engine, d.id);
  let renewals = true;
  a.store.hook = async (op, key) => {
    if (op === 'put' && key.includes('/leases/writer.') && !renewals) throw new BlocksnapError('RemoteUnreachable', 'no route to the store');
    if (op === 'put' && isBlockKey(key)) {
      // The storage holds the upload back past the lease's lifetime while renewals fail: a gc of
      // another host may meanwhile take this writer for dead and sweep.
      renewals = false;
      await sleep(timing.ttlMs + timing.skewMs + 200);
    }
  };
  const job = await a.engine.waitJob(a.engine.offsite.replication.startReplicate(s.id, 'off').id);
  t.match(job, { state: 'failed', error: { code: 'RemoteBusy' } });
  t.same([...shared.objects.keys()].filter(isBlockKey), [], 'no block landed after the lease lapsed');
});
