/**
 * What the start says about a disk whose raw rollback did not finish: how to get out of it (rerun
 * or abandon) whichever way it stopped, and "an unclean stop" only when one cut the rollback off.
 * A clean stop cancels a rollback at a safe point and ends its job `cancelled`; the journal it
 * leaves is known, and calling that start a recovery sends the operator looking for a crash.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine, type EngineLogger } from '../../src/engine';
import { Catalog } from '../../src/catalog/catalog';
import type { Job } from '../../src/engine/types';
import { snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;
const JOB = 'j-00000000000000ad';

/** A raw disk with a snapshot, closed with its rollback journaled by job JOB, recorded in `state`. */
async function leftPartlyRolledBack(t: Test, state: Job['state']): Promise<{ dataDir: string; images: string; name: string }> {
  const dir = t.testdir({ images: {} });
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  const img = makeImage(join(images, 'p.raw'), 16 * BS);
  for (let i = 0; i < 16; i++) fillBlock(img, i, BS, `p${i}`);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id, 'base');
  await engine.close();
  const catalog = Catalog.open(dataDir, BS);
  const at = new Date().toISOString();
  catalog.txn(() => {
    catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: snap.id, startedAt: at, jobId: JOB } });
    catalog.putJob({
      id: JOB, kind: 'rollback', state, diskId: disk.id, snapshotId: snap.id, target: null, doneBytes: 0, totalBytes: 0, progressUnit: 'bytes',
      startedAt: at, finishedAt: state === 'running' ? null : at, result: null,
      error: state === 'running' ? null : { code: 'Cancelled', message: 'the daemon was shutting down, which cancelled the job' },
    });
  });
  await catalog.close();
  return { dataDir, images, name: disk.name };
}

async function startLog(t: Test, dataDir: string, images: string): Promise<string[]> {
  const logs: string[] = [];
  const keep = (_obj: object, msg?: string): void => { if (msg !== undefined) logs.push(msg); };
  const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
  const engine = await Engine.open({ dataDir, imageRoots: [images], logger, blockSize: BS });
  t.teardown(() => engine.close());
  return logs;
}

t.test('a rollback a clean stop cancelled is not called an unclean stop at the next start', async (t) => {
  const { dataDir, images } = await leftPartlyRolledBack(t, 'cancelled');
  const logs = await startLog(t, dataDir, images);
  t.notOk(logs.some((l) => /unclean stop/.test(l)), logs.join('\n'));
});

t.test('the start names a partly rolled back disk with the rerun and the abandon that end it', async (t) => {
  const { dataDir, images, name } = await leftPartlyRolledBack(t, 'cancelled');
  const logs = await startLog(t, dataDir, images);
  t.ok(logs.some((l) => l.includes(`a rollback of disk ${name} to `) && l.includes(`(job ${JOB}) did not finish; run the rollback again`) &&
    l.includes(`blocksnap rollback ${name} --abandon`) && l.includes('until then the disk refuses snapshots')), logs.join('\n'));
});

t.test('a rollback a crash cut off is still reported as recovered from an unclean stop', async (t) => {
  const { dataDir, images } = await leftPartlyRolledBack(t, 'running');
  const logs = await startLog(t, dataDir, images);
  t.ok(logs.some((l) => l.startsWith('recovered from an unclean stop')), logs.join('\n'));
  t.ok(logs.some((l) => /did not finish; run the rollback again/.test(l)), 'and how to end it');
});
