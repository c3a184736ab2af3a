/**
 * A snapshot of a copy-on-write disk that is that disk's base and, through a second clone --cow,
 * another disk's base too. Every path that deletes snapshots must keep it while the other disk
 * exists: its volume reads the snapshot's blocks wherever it was not written.
 */
import t from 'tap';
import { join } from 'node:path';
import type { Engine } from '../../src/engine';
import type { Snapshot } from '../../src/engine/types';
import { readAll, served } from '../helpers/cow';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { KiB64, openSmallEngine } from '../helpers/model';
import type { SnapshotQuota } from '../../src/engine/quotas';

const BLOCKS = 4;

/**
 * Raw disk p, snapshot p1; COW disk p3 over p1, written through its writable export and
 * snapshotted as p3s (now p3's base); COW disk q3 over p3s. Returns what q3 reads.
 */
async function sharedBase(t: Parameters<typeof openSmallEngine>[0], o: { snapshotQuota?: Partial<SnapshotQuota> } = {}) {
  const f = await openSmallEngine(t, o);
  const img = makeImage(join(f.images, 'p.raw'), BLOCKS * KiB64);
  for (let i = 0; i < BLOCKS; i++) fillBlock(img, i, KiB64, `p-${i}`);
  await f.engine.addDisk({ path: img, name: 'p' });
  await snapshot(f.engine, 'p', 'p1');
  await f.engine.cloneCow('p1', 'p3');
  const b = await served(f.engine, 'p3');
  await b.write!(KiB64 + 512, pattern('p3-write', 8192), true);
  const content = await readAll(b);
  // A served disk cannot be removed (DiskExported): stopped, only the base can stand in the way.
  await f.engine.exports.stop('p3');
  const p3s = await snapshot(f.engine, 'p3', 'p3s');
  const q3 = await f.engine.cloneCow('p3s', 'q3');
  return { ...f, p3s, q3, content };
}

async function reads(engine: Engine, disk: string): Promise<Buffer> {
  const b = await served(engine, disk);
  try {
    return await readAll(b);
  } finally {
    await engine.exports.stop(disk);
  }
}

t.test('disk remove --delete-snapshots of a COW disk is refused while another COW disk rests on its base', async (t) => {
  const { engine, p3s, q3, content } = await sharedBase(t);
  t.equal(engine.getDisk('p3').cow!.baseSnapshotId, p3s.id, 'p3s is p3\'s own base');
  await t.rejects(engine.removeDisk('p3', { deleteSnapshots: true }), {
    code: 'SnapshotHasClones', message: /copy-on-write disk q3/, details: { snapshotId: p3s.id, diskId: q3.id },
  });
  t.equal(engine.getDisk('p3').snapshotCount, 1, 'p3 and its snapshot are still there');
  // What a remove that went ahead would have broken: q3 reads and snapshots its base, also after a gc.
  await finished(engine, engine.startGc());
  await engine.idle();
  t.ok((await reads(engine, 'q3')).equals(content), 'q3 reads p3s');
  t.equal((await snapshot(engine, 'q3', 'q3s')).status, 'available', 'q3 takes snapshots');
});

t.test('once no other disk rests on it, a COW disk goes with its snapshots, its own base included', async (t) => {
  const { engine, p3s } = await sharedBase(t);
  await engine.removeDisk('q3');
  t.match(await engine.removeDisk('p3', { deleteSnapshots: true }), { name: 'p3' });
  t.throws(() => engine.getSnapshot(p3s.id), { code: 'SnapshotNotFound' });
});

t.test('snapshot delete of a base two COW disks share is refused', async (t) => {
  const { engine, p3s, q3 } = await sharedBase(t);
  await t.rejects(engine.deleteSnapshot(p3s.id), { code: 'SnapshotHasClones' });
  await snapshot(engine, 'p3', 'moves-p3s-base');
  await t.rejects(engine.deleteSnapshot(p3s.id), { code: 'SnapshotHasClones', details: { diskId: q3.id } },
    'still refused once p3 rests on another snapshot: q3 rests on it');
});

t.test('retention of a COW disk keeps an automatic snapshot another COW disk rests on', async (t) => {
  const { engine } = await sharedBase(t);
  engine.policies.create({ name: 'now', hours: [0], retention: { keepLast: 1 } });
  engine.policies.bind('now', ['p3']);
  const first = await engine.policies.run('now');
  const a1 = first.disks[0]!.snapshotId!;
  await engine.cloneCow(a1, 'r');
  const second = await engine.policies.run('now', new Date(Date.now() + 1000));
  t.not(engine.getDisk('p3').cow!.baseSnapshotId, a1, 'p3 rests on the newer snapshot');
  t.same(second.disks[0]!.expired, [], 'the older automatic snapshot is kept: r rests on it');
  t.equal(engine.getSnapshot(a1).status, 'available');
});

t.test('quota eviction on a COW disk keeps an automatic snapshot another COW disk rests on', async (t) => {
  const { engine } = await sharedBase(t, { snapshotQuota: { auto: 2 } });
  const a1 = (await finished(engine, engine.startSnapshot('p3', { type: 'auto' }))).result as Snapshot;
  await engine.cloneCow(a1.id, 'r');
  const a2 = (await finished(engine, engine.startSnapshot('p3', { type: 'auto' }))).result as Snapshot;
  // The oldest is r's base; the newest is only p3's own, which the third replaces as its base.
  const a3 = (await finished(engine, engine.startSnapshot('p3', { type: 'auto' }))).result as Snapshot;
  t.equal(engine.getSnapshot(a1.id).status, 'available', 'r\'s base is kept');
  t.throws(() => engine.getSnapshot(a2.id), { code: 'SnapshotNotFound' }, 'p3\'s previous base made the room');
  t.same(engine.listSnapshots('p3').filter((s) => s.type === 'auto').map((s) => s.id).sort(), [a1.id, a3.id].sort());
});

t.test('group delete is refused while another COW disk rests on a member that is also its own disk\'s base', async (t) => {
  const { engine } = await sharedBase(t);
  const g = await engine.groups.create({ disks: ['p3'], name: 'g' }).done;
  await engine.cloneCow(g.snapshotIds[0]!, 'r');
  t.throws(() => engine.groups.delete('g'), { code: 'SnapshotHasClones' });
  await snapshot(engine, 'p3', 'moves-the-base');
  t.throws(() => engine.groups.delete('g'), { code: 'SnapshotHasClones', message: /copy-on-write disk r;/ }, 'r still rests on it');
  await t.rejects(engine.removeDisk('p3', { deleteSnapshots: true }), { code: 'SnapshotInGroup' }, 'and disk remove leaves group members to group delete');
});
