/**
 * A raw rollback commits to its journal that it writes (`writesBegun`) before its first write. A
 * daemon killed before that commit left the image as it was, and the next start says so: the
 * journal is cleared, the disk takes snapshots, and the job's error tells. Killed after it, the
 * image may be partly rolled back: the journal stays until a rollback completes or is abandoned,
 * as it does for journals written before the field was recorded.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { Engine, type EngineLogger } from '../../src/engine';
import { abandonedImage, abandonedMessage } from '../../src/engine/image-rollback';
import type { DiskRecord } from '../../src/catalog/records';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, sha256File } from '../helpers/images';
import { KiB64 } from '../helpers/model';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');

type KillPoint = 'before-mark' | 'after-mark' | 'at-apply';

/** Runs the rollback of `disk` to `snap` in an engine that kills itself at `point` (raw-rollback-kill-child.ts). */
function killedAt(t: Test, point: KillPoint, dataDir: string, images: string, disk: string, snap: string): void {
  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'raw-rollback-kill-child.ts'))})`;
  const child = spawnSync(process.execPath, ['-e', main, dataDir, images, disk, snap, point], {
    cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 120_000,
  });
  t.equal(child.signal, 'SIGKILL', `the child was killed at ${point}: ${child.stderr}`);
}

interface Setup { dataDir: string; images: string; img: string; open: () => Promise<{ engine: Engine; logs: string[] }> }

/** A raw disk of 32 blocks snapshotted as `base`, every block changed since; no engine open. */
async function changedRaw(t: Test): Promise<Setup> {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  const open = async (): Promise<{ engine: Engine; logs: string[] }> => {
    const logs: string[] = [];
    const keep = (_obj: object, msg?: string): void => { if (msg !== undefined) logs.push(msg); };
    const logger: EngineLogger = { debug() {}, info: keep, warn: keep, error: keep };
    const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: KiB64, logger });
    t.teardown(() => engine.close());
    return { engine, logs };
  };
  const { engine } = await open();
  const img = makeImage(join(images, 'r.raw'), 32 * KiB64);
  for (let i = 0; i < 32; i++) fillBlock(img, i, KiB64, `r-${i}`);
  await engine.addDisk({ path: img, name: 'r' });
  await snapshot(engine, 'r', 'base');
  for (let i = 0; i < 32; i++) fillBlock(img, i, KiB64, `later-${i}`);
  await engine.close();
  return { dataDir, images, img, open };
}

t.test('a raw rollback killed before it journals its first write leaves the disk as it was, and the start says so', async (t) => {
  const s = await changedRaw(t);
  const before = await sha256File(s.img);
  killedAt(t, 'before-mark', s.dataDir, s.images, 'r', 'base');
  t.equal(await sha256File(s.img), before, 'nothing was written');
  const { engine, logs } = await s.open();
  t.equal(engine.getDisk('r').pendingRollback, null, 'the start cleared the journal');
  t.ok(logs.some((l) => /raw rollback interrupted by an unclean stop before it wrote anything; .*journal was cleared/.test(l)), 'and logged why');
  const job = engine.listJobs().find((j) => j.kind === 'rollback');
  t.match(job, { state: 'interrupted', error: { code: 'Interrupted', message: /before it wrote anything: disk r is as it was and takes snapshots as before$/ } },
    'the job\'s error says the disk is as it was');
  await snapshot(engine, 'r', 'after');
  t.throws(() => engine.abandonRollback('r'), { code: 'RollbackNotPending' }, 'there is nothing to abandon');
});

t.test('a raw rollback killed once its journal says it writes stays journaled, and a rerun completes it', async (t) => {
  const s = await changedRaw(t);
  killedAt(t, 'after-mark', s.dataDir, s.images, 'r', 'base');
  const { engine } = await s.open();
  t.match(engine.getDisk('r').pendingRollback, { snapshotId: engine.getSnapshot('base').id }, 'the journal stays');
  t.throws(() => engine.startSnapshot('r'), { code: 'RollbackIncomplete' }, 'snapshots are refused');
  const job = engine.listJobs().find((j) => j.kind === 'rollback');
  t.equal(job?.state, 'interrupted');
  t.equal(job?.error?.message, 'the daemon stopped while this job was running', 'the job\'s error claims nothing about the disk');
  const rerun = await finished(engine, engine.startRollback('r', 'base'));
  t.equal(engine.getDisk('r').pendingRollback, null, 'a rerun completes it');
  t.equal(rerun.phase, 'writing', 'the rerun, which has no write to journal first, tells its phase all the same');
});

t.test('a raw rollback journaled as writing is abandoned as partial', async (t) => {
  const s = await changedRaw(t);
  killedAt(t, 'after-mark', s.dataDir, s.images, 'r', 'base');
  const { engine } = await s.open();
  const r = engine.abandonRollback('r');
  t.equal(r.image, 'partial');
  t.match(r.message, /possibly a mix of the two/);
});

t.test('a rerun over an image an earlier attempt may have written stays journaled when killed before it writes', async (t) => {
  const s = await changedRaw(t);
  killedAt(t, 'after-mark', s.dataDir, s.images, 'r', 'base');
  killedAt(t, 'at-apply', s.dataDir, s.images, 'r', 'base');
  const { engine } = await s.open();
  t.ok(engine.getDisk('r').pendingRollback, 'the rerun took over the earlier attempt\'s "may have written"');
  t.equal(engine.abandonRollback('r').image, 'partial');
});

t.test('a raw journal without writesBegun (written by an older version) stays at start and abandons as partial', async (t) => {
  const s = await changedRaw(t);
  const catalog = Catalog.open(s.dataDir, KiB64);
  const disk = catalog.allDisks()[0]!;
  const base = catalog.snapshotsOfDisk(disk.id)[0]!;
  catalog.txn(() => catalog.putDisk({ ...disk, pendingRollback: { snapshotId: base.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000ad' } }));
  await catalog.close();
  const { engine } = await s.open();
  t.match(engine.getDisk('r').pendingRollback, { jobId: 'j-00000000000000ad' }, 'the start keeps it');
  t.equal(engine.abandonRollback('r').image, 'partial');
});

t.test('a raw rollback cancelled once its journal says it writes, before its first write, leaves no journal', async (t) => {
  const s = await changedRaw(t);
  const { engine, logs } = await s.open();
  const before = await sha256File(s.img);
  // Test hook: the cancel lands once the journal is marked, before the apply goes on to write.
  const native = require('../../src/native') as typeof import('../../src/native');
  const real = native.applyImage;
  let jobId = '';
  native.applyImage = async (o) => real({ ...o, beforeWrite: () => { o.beforeWrite?.(); engine.cancelJob(jobId); } });
  t.teardown(() => { native.applyImage = real; });
  jobId = engine.startRollback('r', 'base').id;
  const done = await engine.waitJob(jobId);
  t.equal(done.state, 'cancelled');
  t.equal(done.phase, 'comparing', 'the job says it stopped before writing');
  t.match(done.error?.message, /stopped before it wrote anything: the disk is as it was and takes snapshots as before/);
  t.equal(engine.getDisk('r').pendingRollback, null, 'the marked journal was cleared');
  t.equal(await sha256File(s.img), before, 'nothing was written');
  t.ok(logs.some((l) => /raw rollback cancelled before it wrote anything/.test(l)), 'logged');
});

t.test('a raw journal that says no write began abandons as unchanged', async (t) => {
  const d = { name: 'r', format: 'raw' } as DiskRecord;
  const p = { snapshotId: 's-0000000000000001', startedAt: '', jobId: 'j-0000000000000001' };
  t.equal(abandonedImage(d, { ...p, writesBegun: false }), 'unchanged');
  t.equal(abandonedImage(d, { ...p, writesBegun: true }), 'partial');
  t.match(abandonedMessage(d, 'unchanged', 'base'), /The image is the one from before it: it stopped before it wrote anything\./);
});
