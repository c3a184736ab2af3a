/**
 * DiskBusy names disks as the operator knows them, by the names they gave, and the job in the
 * way; the ids stay in the details for scripts.
 */
import { linkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { finished, openEngine } from '../helpers/engine';
import { makeImage } from '../helpers/images';

t.test('a busy disk is named by its name', async (t) => {
  const { engine, images } = await openEngine(t);
  const disk = await engine.addDisk({ path: makeImage(join(images, 'a.raw'), 4 << 20), name: 'vm1' });
  const job = engine.startSnapshot('vm1');
  t.throws(() => engine.startSnapshot('vm1'), { code: 'DiskBusy', message: `disk vm1 is busy with job ${job.id}`, details: { diskId: disk.id, jobId: job.id } });
  await finished(engine, job);
});

t.test('a disk whose image file a busy disk shares names both disks by their names', async (t) => {
  const { engine, images } = await openEngine(t);
  const a = await engine.addDisk({ path: makeImage(join(images, 'a.raw'), 4 << 20), name: 'vm1' });
  await engine.addDisk({ path: makeImage(join(images, 'b.raw'), 4 << 20), name: 'vm2' });
  unlinkSync(join(images, 'b.raw'));
  linkSync(join(images, 'a.raw'), join(images, 'b.raw'));
  const job = engine.startSnapshot('vm1');
  t.throws(() => engine.startSnapshot('vm2'), {
    code: 'DiskBusy', message: `disk vm2 has the same image file as disk vm1, which is busy with job ${job.id}`, details: { sameFileAs: a.id },
  });
  await finished(engine, job);
});
