/**
 * An import job names the snapshot it carries from the moment its stream's header is read: in
 * `job show` while it runs, once it is cancelled, and after a crash cut it off. Before, its
 * snapshotId stayed null, and only a succeeded import's result said which snapshot it was.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import type { InChannel } from '../../src/engine/streams';
import { engineWithSnapshot, finished, secondEngine } from '../helpers/engine';
import { makeImage } from '../helpers/images';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');
const BS = 64 * 1024;

/** Host a with snapshot s1 of 8 blocks exported to a stream file; host b with an empty disk. */
async function hosts(t: Test) {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 8, filled: 8, disk: 'vm', snapshot: 's1' });
  const stream = join(a.images, 's1.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', stream));
  const b = await secondEngine(t, a, BS);
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 8 * BS) });
  return { a, b, stream, disk };
}

t.test('a running import names its snapshot, and a cancelled one keeps it', async (t) => {
  const { a, b, stream, disk } = await hosts(t);
  const bytes = readFileSync(stream);
  const half = bytes.length >> 1;
  let at = 0;
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  const channel: InChannel = {
    async read(max) {
      if (at === half) await held;
      const end = Math.min(half, at + max);
      const out = bytes.subarray(at, end);
      at = end;
      return out;
    },
    close() { release(); },
  };
  const job = b.engine.offsite.streams.startImport(channel, disk.id);
  // Blocks of the first half stored: the header is read by then, however loaded the machine.
  while (at < half || b.engine.getJob(job.id).doneBytes === 0) await new Promise((r) => setTimeout(r, 5));
  t.equal(b.engine.getJob(job.id).snapshotId, a.snap.id, 'while it runs');
  b.engine.cancelJob(job.id);
  const end = await b.engine.waitJob(job.id);
  t.match(end, { state: 'cancelled', snapshotId: a.snap.id }, 'once cancelled');
});

t.test('an import a crash cut off still names its snapshot', async (t) => {
  const { a, b, stream, disk } = await hosts(t);
  await b.engine.close();
  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'import-snapshot-id-child.ts'))})`;
  const child = spawnSync(process.execPath, ['-e', main, b.dataDir, b.images, stream, disk.id], { cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 120_000 });
  t.equal(child.signal, 'SIGKILL', `the child was killed mid-import: ${child.stderr}`);
  const again = await Engine.open({ dataDir: b.dataDir, imageRoots: [b.images], blockSize: BS });
  t.teardown(() => again.close());
  t.match(again.listJobs().find((j) => j.kind === 'import'), { state: 'interrupted', snapshotId: a.snap.id });
});
