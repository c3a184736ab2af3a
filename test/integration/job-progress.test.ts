/**
 * What an operator following a job sees, through the real daemon: a qcow2 image's scan and
 * rollback weighed by the data they read, not by the virtual size; a qcow2 rollback's phases; and,
 * for every kind of job, a share done that never goes back, whether read from the job's progress
 * events or by polling `job.show`.
 */
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { haveQemu, must, qemuImg, qemuIo } from '../helpers/qemu';
import { follow, neverBack } from './fixtures/follow-job';
import { freshDaemon, type Daemon } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble } from './fixtures/images';

const missing = haveQemu();
if (missing) t.plan(0, missing);

/** The bytes of the image's clusters that hold data, as QEMU maps them (zero clusters and holes not). */
function allocatedData(img: string): number {
  const map = JSON.parse(must('qemu-img', ['map', '-f', 'qcow2', '--output=json', img])) as Array<{ length: number; data: boolean; zero: boolean }>;
  return map.filter((e) => e.data && !e.zero).reduce((a, e) => a + e.length, 0);
}

/** A 64 GiB qcow2 image holding 24 MiB of data in three places, and a zeroed range; registered as `vm`. */
async function sparseQcow2(d: Daemon): Promise<string> {
  const img = join(d.imageRoot, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '64G');
  qemuIo(img, 'qcow2', 'write -P 0x61 0 8M', 'write -P 0x62 32G 8M', 'write -P 0x63 63G 8M', 'write -z 1G 16M');
  await d.json('disk', 'add', 'vm.qcow2', '--name', 'vm');
  return img;
}

t.test('a qcow2 snapshot counts the allocated data it reads, not the virtual size', async (t) => {
  const d = await freshDaemon(t);
  const img = await sparseQcow2(d);
  const data = allocatedData(img);
  t.equal(data, 24 * MiB, 'QEMU maps the 24 MiB written as data');
  const f = await follow(t, d, 'snapshot.create', { disk: 'vm', name: 'base' });
  t.match(f.end, { totalBytes: data, doneBytes: data }, 'the whole is the 24 MiB of data, not the 64 GiB');
  const running = [...f.events, ...f.polls].filter((j) => j.state === 'running' && j.totalBytes > 0);
  t.ok(running.every((j) => j.totalBytes === data && j.doneBytes <= data), 'while it runs, the total is the data and done is within it');
  neverBack(t, 'qcow2 snapshot', f);
});

t.test('a qcow2 snapshot through a backing chain counts the data the chain holds where the overlay has none', async (t) => {
  const d = await freshDaemon(t);
  const base = join(d.imageRoot, 'base.qcow2');
  qemuImg('create', '-f', 'qcow2', base, '16G');
  qemuIo(base, 'qcow2', 'write -P 0x71 0 12M');
  const top = join(d.imageRoot, 'top.qcow2');
  qemuImg('create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
  // 4 MiB over the backing file's data, 4 MiB past it: 12 + 4 read through the chain.
  qemuIo(top, 'qcow2', 'write -P 0x72 8M 4M', 'write -P 0x73 8G 4M');
  await d.json('disk', 'add', 'top.qcow2', '--name', 'top');
  const f = await follow(t, d, 'snapshot.create', { disk: 'top', name: 'base' });
  t.match(f.end, { totalBytes: 16 * MiB, doneBytes: 16 * MiB }, '8 MiB of the backing file, 8 of the overlay, not the 16 GiB');
});

t.test('a qcow2 rollback weighs the data it reads and reports comparing, then writing once the disk is replaced', async (t) => {
  const d = await freshDaemon(t);
  const img = await sparseQcow2(d);
  await d.json('snapshot', 'create', 'vm', '--name', 'base');
  qemuIo(img, 'qcow2', 'write -P 0x64 16G 8M');
  const f = await follow(t, d, 'rollback', { disk: 'vm', snapshot: 'base' });
  t.match(f.end, { phase: 'writing', totalBytes: 24 * MiB, doneBytes: 24 * MiB }, 'the snapshot\'s 24 MiB of data, not the 64 GiB');
  const phases = f.events.map((j) => j.phase).filter((p, i, all) => p !== undefined && p !== all[i - 1]);
  t.same(phases, ['comparing', 'writing'], 'each phase is told as it begins, comparing first');
  t.ok(f.events.every((j) => j.phase !== 'comparing' || j.totalBytes === 24 * MiB), 'comparing counts the data');
  neverBack(t, 'qcow2 rollback', f);
});

t.test('a raw rollback\'s total starts with all it may write and only shrinks, so its share done never drops at the change of phase', async (t) => {
  const d = await freshDaemon(t);
  const raw = join(d.imageRoot, 'r.raw');
  makeImage(raw, 128 * MiB, [2, 3, 5, 8, 13, 21]);
  await d.json('disk', 'add', 'r.raw', '--name', 'r');
  await d.json('snapshot', 'create', 'r', '--name', 's1');
  for (const b of [2, 5, 13]) scribble(raw, b * BLOCK, BLOCK);
  const f = await follow(t, d, 'rollback', { disk: 'r', snapshot: 's1' });
  // 6 data blocks compared, 3 written.
  t.match(f.end, { phase: 'writing', doneBytes: 9 * BLOCK, totalBytes: 9 * BLOCK });
  const comparing = f.events.filter((j) => j.phase === 'comparing');
  t.ok(comparing.length > 0 && comparing.every((j) => j.totalBytes >= 9 * BLOCK && j.totalBytes <= 12 * BLOCK),
    'while comparing, the total holds the 6 blocks to compare and up to the 6 it may write');
  for (const [how, seq] of [['events', f.events], ['polls', f.polls]] as const) {
    const counted = [...seq, f.end].filter((j) => j.totalBytes > 0);
    t.ok(counted.every((j, i) => i === 0 || j.totalBytes <= counted[i - 1]!.totalBytes), `the total never grows (${how})`);
  }
  neverBack(t, 'raw rollback', f);
});

t.test('no job kind ever shows a client its share done going back', async (t) => {
  const d = await freshDaemon(t);
  const other = await freshDaemon(t);
  // 16 MiB blocks of data spread over 256 MiB; after the snapshot, half of them overwritten.
  const raw = join(d.imageRoot, 'r.raw');
  makeImage(raw, 256 * MiB, [0, 5, 9, 17, 33, 40, 50, 63]);
  await d.json('disk', 'add', 'r.raw', '--name', 'r');
  neverBack(t, 'raw snapshot', await follow(t, d, 'snapshot.create', { disk: 'r', name: 's1' }));
  for (const b of [0, 9, 33, 63]) scribble(raw, b * BLOCK, BLOCK);
  neverBack(t, 'incremental raw snapshot', await follow(t, d, 'snapshot.create', { disk: 'r', name: 's2' }));
  for (const b of [5, 17]) scribble(raw, b * BLOCK, BLOCK);
  neverBack(t, 'raw rollback', await follow(t, d, 'rollback', { disk: 'r', snapshot: 's1' }));
  neverBack(t, 'raw clone', await follow(t, d, 'clone', { snapshot: 's2', path: join(d.imageRoot, 'c.raw') }));
  neverBack(t, 'qcow2 clone', await follow(t, d, 'clone', { snapshot: 's2', path: join(d.imageRoot, 'c.qcow2'), format: 'qcow2' }));

  const q = await sparseQcow2(d);
  neverBack(t, 'qcow2 snapshot', await follow(t, d, 'snapshot.create', { disk: 'vm', name: 'q1' }));
  qemuIo(q, 'qcow2', 'write -P 0x65 2G 8M');
  neverBack(t, 'qcow2 rollback', await follow(t, d, 'rollback', { disk: 'vm', snapshot: 'q1' }));

  await d.json('clone', 's1', '--cow', '--name', 'cow1');
  neverBack(t, 'flatten', await follow(t, d, 'disk.flatten', { disk: 'cow1', path: join(d.imageRoot, 'flat.qcow2'), format: 'qcow2' }));

  const stream = join(d.imageRoot, 's1.bsnap');
  neverBack(t, 'export', await follow(t, d, 'snapshot.export', { snapshot: 's1', path: stream }));
  makeImage(join(other.imageRoot, 'r.raw'), 256 * MiB, []);
  await other.json('disk', 'add', 'r.raw', '--name', 'r');
  copyFileSync(stream, join(other.imageRoot, 's1.bsnap'));
  neverBack(t, 'import', await follow(t, other, 'snapshot.import', { path: join(other.imageRoot, 's1.bsnap'), disk: 'r' }));

  neverBack(t, 'verify', await follow(t, d, 'store.verify', {}));
  await d.json('snapshot', 'delete', 's2');
  neverBack(t, 'gc', await follow(t, d, 'store.gc', {}));
});
