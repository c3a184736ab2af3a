import t from 'tap';
import { join } from 'node:path';
import type { SnapshotRecord } from '../../src/catalog/records';
import { quotaEvictions } from '../../src/engine/quotas';
import { snapshot, finished } from '../helpers/engine';
import { fillBlock, sha256File } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

t.test('a configured quota: the last manual snapshot within it succeeds, the next fails', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { manual: 3, auto: 3 } });
  const d = await smallDisk(f, 'vm', 2);
  for (let i = 1; i <= 3; i++) await snapshot(f.engine, d.id, `m${i}`);
  t.throws(() => f.engine.startSnapshot(d.id, { name: 'm4' }), { code: 'SnapshotQuotaExceeded' }, 'the 4th of 3');
  t.equal(f.engine.listSnapshots(d.id).length, 3, 'nothing was created or deleted');
  await f.engine.deleteSnapshot('m1');
  await snapshot(f.engine, d.id, 'm4');
  t.pass('after a delete there is room again');
});

t.test('an automatic snapshot over quota deletes the oldest automatic one only', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { manual: 2, auto: 2 } });
  const d = await smallDisk(f, 'vm', 2);
  const auto = async (name: string): Promise<string> => {
    const job = await finished(f.engine, f.engine.startSnapshot(d.id, { type: 'auto', name }));
    return job.snapshotId!;
  };
  const m1 = await snapshot(f.engine, d.id, 'manual-1');
  const a1 = await auto('auto-a1');
  const m2 = await snapshot(f.engine, d.id, 'manual-2');
  const a2 = await auto('auto-a2');
  fillBlock(d.path, 0, KiB64, 'changed');
  const a3 = await auto('auto-a3');
  const ids = f.engine.listSnapshots(d.id).map((s) => s.id);
  t.same(ids, [m1.id, m2.id, a2, a3], 'a1 (the oldest auto) went; both manual snapshots stay');
  t.notOk(ids.includes(a1));
  t.throws(() => f.engine.startSnapshot(d.id, { name: 'manual-3' }), { code: 'SnapshotQuotaExceeded' }, 'manual quota is separate');
});

t.test('the default quota: the 256th manual snapshot succeeds, the 257th fails', async (t) => {
  const f = await openSmallEngine(t);
  const d = await smallDisk(f, 'vm', 1);
  const started = Date.now();
  for (let i = 1; i <= 256; i++) await snapshot(f.engine, d.id, `m${i}`);
  t.equal(f.engine.listSnapshots(d.id).length, 256);
  const err = (() => { try { f.engine.startSnapshot(d.id, { name: 'm257' }); } catch (e) { return e as { code: string; details?: { quota: number } }; } return null; })();
  t.equal(err?.code, 'SnapshotQuotaExceeded', 'the 257th is refused');
  t.equal(err?.details?.quota, 256);
  t.comment(`256 snapshots of a 64 KiB disk in ${Date.now() - started} ms`);
});

t.test('evicting the head and its children keeps the chain whole', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { manual: 4, auto: 2 } });
  const d = await smallDisk(f, 'vm', 3);
  const auto = async (name: string): Promise<string> => (await finished(f.engine, f.engine.startSnapshot(d.id, { type: 'auto', name }))).snapshotId!;
  await auto('auto-1');
  fillBlock(d.path, 1, KiB64, 'two');
  const a2 = await auto('auto-2');
  const h2 = await sha256File(d.path);
  // The quota drops to 1: both existing automatic snapshots go, the head among them.
  await f.engine.close();
  const g = await openSmallEngine(t, { snapshotQuota: { manual: 4, auto: 1 }, dir: f.dataDir.replace(/\/data$/, '') });
  fillBlock(d.path, 2, KiB64, 'three');
  const a3 = (await finished(g.engine, g.engine.startSnapshot(d.id, { type: 'auto', name: 'auto-3' }))).snapshotId!;
  const snaps = g.engine.listSnapshots(d.id);
  t.same(snaps.map((s) => s.id), [a3], 'only the new one remains');
  t.equal(snaps[0]!.parentId, null, 'its parent is what the head stepped back to, not a deleted snapshot');
  t.notOk(snaps.some((s) => s.id === a2));
  const out = join(g.images, 'out.raw');
  await finished(g.engine, g.engine.startClone(a3, out));
  t.equal(await sha256File(out), await sha256File(d.path), 'and it restores the image as it is now');
  t.not(await sha256File(out), h2);
});

t.test('a full automatic quota names the oldest snapshots it cannot delete and why, five at most', async (t) => {
  const snap = (i: number, o: Partial<SnapshotRecord> = {}): SnapshotRecord => ({
    id: `s-${i}`, diskId: 'd-1', name: `auto-${i}`, description: '', status: 'available', type: 'auto', parentId: null,
    createdAt: new Date(Date.UTC(2027, 0, 1, i)).toISOString(), completedAt: null, sizeBytes: 0, blockSize: KiB64, blockCount: 0,
    logicalBytes: 0, changedBlocks: 0, newBytes: 0, error: null, jobId: null, ...o,
  });
  const snaps = [snap(7), snap(1, { groupId: 'g-1' }), snap(2, { status: 'creating' }), snap(3), snap(4), snap(5), snap(6)];
  const err = (() => {
    try {
      quotaEvictions('vm', snaps, 'auto', { manual: 10, auto: 7 }, (s) => (s.id === 's-3' ? 'is exported as vm-3' : false));
    } catch (e) {
      return e as { code: string; message: string; details: { blocked: Array<{ snapshotId: string; reason: string }> } };
    }
    return null;
  })();
  t.equal(err?.code, 'SnapshotQuotaExceeded');
  t.same(err?.details.blocked.map((b) => b.snapshotId), ['s-1', 's-2', 's-3', 's-4', 's-5'], 'oldest first, five of seven');
  t.match(err?.message, 's-1 is a member of group g-1; s-2 is still being created; s-3 is exported as vm-3; s-4 is in use');
  t.match(err?.message, /; and 2 more$/);
});

t.test('a copy-on-write disk at a manual quota of one takes another manual snapshot, then the older one can go', async (t) => {
  const f = await openSmallEngine(t, { snapshotQuota: { manual: 1 } });
  const origin = await smallDisk(f, 'origin', 2);
  await f.engine.cloneCow((await snapshot(f.engine, origin.id, 'golden')).id, 'vm');
  const first = await snapshot(f.engine, 'vm', 'm1');
  const second = await snapshot(f.engine, 'vm', 'm2');
  t.equal(f.engine.getDisk('vm').cow?.baseSnapshotId, second.id, 'the new one is the disk\'s base');
  t.throws(() => f.engine.startSnapshot('vm', { name: 'm3' }), { code: 'SnapshotQuotaExceeded' }, 'm1 counts once it is no longer the base');
  await f.engine.deleteSnapshot(first.id);
  t.same(f.engine.listSnapshots('vm').map((s) => s.name), ['m2']);
});
