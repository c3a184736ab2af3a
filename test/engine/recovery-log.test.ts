/**
 * What the start's recovery line says about the jobs a crash cut off: which they were, by kind
 * and id, and, when one of them stored blocks before a commit (a snapshot, an import or a qcow2
 * restore's staged blocks), that store gc removes what it left.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine, type EngineLogger } from '../../src/engine';
import { Catalog } from '../../src/catalog/catalog';
import type { JobKind } from '../../src/engine/types';

const BS = 64 * 1024;

/** The start's log messages over a data dir whose catalog records `jobs` as still running. */
async function startAfterCrash(t: Test, jobs: Array<{ id: string; kind: JobKind }>): Promise<string[]> {
  const dir = t.testdir({ images: {} });
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  await (await Engine.open({ dataDir, imageRoots: [images], blockSize: BS })).close();
  const catalog = Catalog.open(dataDir, BS);
  const at = new Date().toISOString();
  catalog.txn(() => {
    for (const j of jobs) {
      catalog.putJob({
        id: j.id, kind: j.kind, state: 'running', diskId: null, snapshotId: null, target: null, doneBytes: 0, totalBytes: 0,
        progressUnit: 'bytes', startedAt: at, finishedAt: null, result: null, error: null,
      });
    }
  });
  await catalog.close();
  const logs: string[] = [];
  const keep = (_obj: object, msg?: string): void => { if (msg !== undefined) logs.push(msg); };
  const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
  const engine = await Engine.open({ dataDir, imageRoots: [images], logger, blockSize: BS });
  t.teardown(() => engine.close());
  return logs.filter((l) => l.startsWith('recovered from an unclean stop'));
}

t.test('an interrupted import names itself and points at store gc', async (t) => {
  const [line] = await startAfterCrash(t, [{ id: 'j-00000000000000a1', kind: 'import' }]);
  t.match(line, /that interrupted import j-00000000000000a1;/);
  t.match(line, /store verify counts them, store gc removes them$/);
});

t.test('an interrupted restore, which stages its blocks in the store, points at store gc too', async (t) => {
  const [line] = await startAfterCrash(t, [{ id: 'j-00000000000000a2', kind: 'restore' }]);
  t.match(line, /that interrupted restore j-00000000000000a2;/);
  t.match(line, /store verify counts them, store gc removes them$/);
});

t.test('an interrupted verify names itself but leaves no blocks to point at', async (t) => {
  const [line] = await startAfterCrash(t, [{ id: 'j-00000000000000b1', kind: 'verify' }]);
  t.equal(line, 'recovered from an unclean stop that interrupted verify j-00000000000000b1');
});

t.test('a busy crash names ten jobs and counts the rest', async (t) => {
  const jobs = Array.from({ length: 12 }, (_, i) => ({ id: `j-00000000000000${(0xc0 + i).toString(16)}`, kind: 'clone' as const }));
  const [line] = await startAfterCrash(t, jobs);
  t.equal(line!.match(/clone j-/g)?.length, 10);
  t.match(line, / and 2 more jobs$/);
});
