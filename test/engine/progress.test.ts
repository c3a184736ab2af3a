import t from 'tap';
import { join } from 'node:path';
import type { Job } from '../../src/engine/types';
import { snapshotProgress } from '../../src/engine/progress';
import { makeImage, randomData, writeAt } from '../helpers/images';
import { openSmallEngine } from '../helpers/model';

t.test('snapshotProgress: percent with one decimal, average rate since the start', async (t) => {
  const job = { startedAt: '2027-01-01T00:00:00.000Z', doneBytes: 300, totalBytes: 900 } as Job;
  t.same(snapshotProgress(job, Date.parse('2027-01-01T00:00:02.000Z')), { doneBytes: 300, totalBytes: 900, percent: 33.3, bytesPerSecond: 150 });
  t.equal(snapshotProgress({ ...job, totalBytes: 0 }, Date.parse('2027-01-01T00:00:02.000Z')).percent, 0, 'unknown total: 0%');
});

t.test('a creating snapshot shows live progress; an available one shows none', async (t) => {
  const f = await openSmallEngine(t);
  const path = makeImage(join(f.images, 'big.raw'), 64 * 1024 * 1024);
  writeAt(path, 0, randomData(32 * 1024 * 1024)); // 512 new 64 KiB blocks, each written durably
  const disk = await f.engine.addDisk({ path, name: 'big' });
  const seen = new Promise<Job>((resolve) => {
    const onJob = (j: Job): void => {
      // The first tick with bytes done, or the end if the scan beat the first tick.
      if (j.kind === 'snapshot' && (j.doneBytes > 0 || j.state !== 'running')) { f.engine.off('job', onJob); resolve(j); }
    };
    f.engine.on('job', onJob);
  });
  const job = f.engine.startSnapshot(disk.id, { name: 'live' });
  t.equal(f.engine.getSnapshot('live').status, 'creating');
  const tick = await seen;
  const s = f.engine.getSnapshot('live');
  if (s.status === 'creating') {
    t.ok(s.progress, 'progress while creating');
    t.ok(s.progress!.doneBytes >= tick.doneBytes && s.progress!.totalBytes === 32 * 1024 * 1024, 'bytes of the image scanned so far, of its data');
    t.ok(s.progress!.percent > 0 && s.progress!.percent <= 100);
    t.ok(s.progress!.bytesPerSecond > 0);
    t.ok(f.engine.listSnapshots(disk.id)[0]!.progress, 'list shows it too');
  } else {
    t.comment('the scan finished before its first progress tick was observed');
  }
  const end = await f.engine.waitJob(job.id);
  t.equal(end.state, 'succeeded');
  t.equal(f.engine.getSnapshot('live').progress, null, 'none once available');
});
