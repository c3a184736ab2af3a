/**
 * The catalog keeps a bounded job history: trimmed when the daemon starts and again as each job
 * ends, since a policy over many disks adds a job per disk per run and `job list` answers them all.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { Catalog } from '../../src/catalog/catalog';
import { JobRunner } from '../../src/engine/jobs';

const BS = 64 * 1024;
const jobId = (n: number): string => `j-${n.toString(16).padStart(16, '0')}`;

async function runJobs(runner: JobRunner, from: number, count: number): Promise<void> {
  for (let n = from; n < from + count; n++) {
    runner.start(jobId(n), 'gc', { diskId: null, snapshotId: null, target: null }, async () => n);
    await runner.wait(jobId(n));
  }
}

t.test('a running daemon keeps only the newest finished jobs, dropping the oldest as each job ends', async (t) => {
  const catalog = Catalog.open(t.testdir(), BS);
  t.teardown(() => catalog.close());
  const runner = new JobRunner(catalog, new EventEmitter(), 5);
  runner.recover();
  await runJobs(runner, 1, 8);
  t.same(catalog.allJobs().map((j) => j.id).sort(), [4, 5, 6, 7, 8].map(jobId), 'the five newest');
  t.same(runner.list().map((j) => j.id), [4, 5, 6, 7, 8].map(jobId), 'and job list answers those');
});

t.test('a restart trims what the last run kept beyond the limit, then trims as jobs end', async (t) => {
  const dir = t.testdir();
  let catalog = Catalog.open(dir, BS);
  await runJobs(new JobRunner(catalog, new EventEmitter(), 10), 1, 8);
  await catalog.close();
  catalog = Catalog.open(dir, BS);
  t.teardown(() => catalog.close());
  const runner = new JobRunner(catalog, new EventEmitter(), 5);
  runner.recover();
  t.same(catalog.allJobs().map((j) => j.id).sort(), [4, 5, 6, 7, 8].map(jobId), 'the start keeps the five newest');
  await runJobs(runner, 9, 2);
  t.same(catalog.allJobs().map((j) => j.id).sort(), [6, 7, 8, 9, 10].map(jobId), 'and each end drops the oldest of them');
});
