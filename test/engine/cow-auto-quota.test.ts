/**
 * The automatic quota on a copy-on-write disk. Each snapshot of such a disk becomes its base, so
 * the previous base is free to go once the new snapshot commits: even a quota of one keeps taking
 * automatic snapshots, each replacing the last.
 */
import t from 'tap';
import { join } from 'node:path';
import type { Snapshot } from '../../src/engine/types';
import { cloned, readAll, served } from '../helpers/cow';
import { finished } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';
import { KiB64, openSmallEngine } from '../helpers/model';

const BLOCKS = 4;

/** Raw disk p snapshotted as p1, and COW disk c over it, served writable. */
async function cowDisk(t: Parameters<typeof openSmallEngine>[0]) {
  const f = await openSmallEngine(t, { snapshotQuota: { auto: 1 } });
  const img = makeImage(join(f.images, 'p.raw'), BLOCKS * KiB64);
  for (let i = 0; i < BLOCKS; i++) fillBlock(img, i, KiB64, `p-${i}`);
  await f.engine.addDisk({ path: img, name: 'p' });
  const p1 = (await finished(f.engine, f.engine.startSnapshot('p', { name: 'p1' }))).result as Snapshot;
  await f.engine.cloneCow('p1', 'c');
  const b = await served(f.engine, 'c');
  return { ...f, p1, b };
}

async function auto(f: Awaited<ReturnType<typeof cowDisk>>): Promise<Snapshot> {
  return (await finished(f.engine, f.engine.startSnapshot('c', { type: 'auto' }))).result as Snapshot;
}

t.test('a COW disk with an automatic quota of one replaces its automatic snapshot with each new one', async (t) => {
  const f = await cowDisk(t);
  await f.b.write!(KiB64, pattern('first', 4096), true);
  await auto(f);
  const atFirst = await readAll(f.b);
  await f.b.write!(2 * KiB64, pattern('second', 4096), true);
  const second = await auto(f);
  t.same(f.engine.listSnapshots('c').map((s) => s.id), [second.id], 'the first is gone, the second is the only one');
  t.equal(f.engine.getDisk('c').cow!.baseSnapshotId, second.id, 'the disk rests on the second');
  t.notOk(atFirst.equals(await readAll(f.b)), 'the disk was written between the two');
  t.ok((await cloned(f.engine, f.images, second, 'second.raw')).equals(await readAll(f.b)), 'the second holds the disk as it is');
});

t.test('the previous base a COW disk\'s automatic snapshot replaced is freed: the disk still reads its writes after a gc', async (t) => {
  const f = await cowDisk(t);
  await f.b.write!(KiB64 + 512, pattern('kept', 8192), true);
  await auto(f);
  await auto(f);
  await finished(f.engine, f.engine.startGc());
  await f.engine.idle();
  const expected = await cloned(f.engine, f.images, f.engine.listSnapshots('c')[0]!, 'now.raw');
  t.ok((await readAll(f.b)).equals(expected), 'the served disk reads what its snapshot holds');
  t.ok(expected.subarray(KiB64 + 512, KiB64 + 512 + 8192).equals(pattern('kept', 8192)), 'including the write the first snapshot folded in');
});

t.test('an automatic snapshot of a COW disk that another COW disk rests on still holds the quota of one', async (t) => {
  const f = await cowDisk(t);
  const first = await auto(f);
  await f.engine.cloneCow(first.id, 'r');
  t.throws(() => f.engine.startSnapshot('c', { type: 'auto' }), { code: 'SnapshotQuotaExceeded' }, 'r rests on the only one');
  t.equal(f.engine.getSnapshot(first.id).status, 'available');
});

t.test('a policy run on a COW disk with an automatic quota of one lists the snapshot it replaced as expired', async (t) => {
  const f = await cowDisk(t);
  f.engine.policies.create({ name: 'hourly', hours: [0] });
  f.engine.policies.bind('hourly', ['c']);
  const first = await f.engine.policies.run('hourly');
  const second = await f.engine.policies.run('hourly', new Date(Date.now() + 1000));
  t.same(second.disks[0]!.expired, [first.disks[0]!.snapshotId], 'the first run\'s snapshot made room');
  t.same(f.engine.listSnapshots('c').map((s) => s.id), [second.disks[0]!.snapshotId]);
});
