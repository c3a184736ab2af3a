/**
 * A group checks every member's disk and image file before it starts anything: a member whose
 * file another disk's job holds (a hard link put in place of a registered image), or two members
 * on one file, used to be refused only once the members before it had started, so a group
 * rollback rolled some disks back and reported DiskBusy, and a group snapshot left a failed group.
 */
import t from 'tap';
import { linkSync, unlinkSync } from 'node:fs';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, sha256File } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

t.test('a group rollback whose member shares its file with a busy disk rolls nothing back', async (t) => {
  const f = await openSmallEngine(t);
  const b = await smallDisk(f, 'b', 4);
  const d = await smallDisk(f, 'd', 4);
  const a = await smallDisk(f, 'a', 4);
  await f.engine.groups.create({ disks: ['b', 'd'], name: 'gbd' }).done;
  // d's image is now a's file too: a job on a holds d's file.
  unlinkSync(a.path);
  linkSync(d.path, a.path);
  fillBlock(b.path, 0, KiB64, 'changed');
  const before = await sha256File(b.path);

  const busy = f.engine.startSnapshot('a', { name: 'on-a' });
  t.throws(() => f.engine.groups.rollback('gbd'), {
    code: 'DiskBusy',
    message: /^disk d has the same image file as disk a, which is busy with job j-\w+; no member of group gbd was rolled back$/,
    details: { sameFileAs: f.engine.getDisk('a').id },
  });
  t.same(f.engine.listJobs().filter((j) => j.kind === 'rollback'), [], 'no rollback job started');
  t.equal(await sha256File(b.path), before, 'b was not rolled back');
  await finished(f.engine, busy);

  const { jobs } = f.engine.groups.rollback('gbd');
  for (const j of jobs) t.equal((await f.engine.waitJob(j.id)).state, 'succeeded', 'free again, the whole group rolls back');
});

t.test('a group over two disks on one image file is refused before any member starts, and leaves no group', async (t) => {
  const f = await openSmallEngine(t);
  const d = await smallDisk(f, 'd', 4);
  const a = await smallDisk(f, 'a', 4);
  await snapshot(f.engine, 'a', 'before');
  unlinkSync(a.path);
  linkSync(d.path, a.path);

  t.throws(() => f.engine.groups.create({ disks: ['a', 'd'], name: 'gsame' }), {
    code: 'DiskBusy',
    message: 'disks a and d have the same image file, which one job at a time may use; no member of the group was started',
  });
  t.same(f.engine.groups.list(), [], 'no group record, so the name stays free');
  t.same(f.engine.listJobs().filter((j) => j.kind === 'snapshot' && j.state === 'running'), [], 'no member snapshot started');
});
