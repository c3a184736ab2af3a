/**
 * An import holds its whole block map until it commits, and a client sends it at its own pace.
 * The map bytes all imports hold are bounded together (SnapshotStreams.mapBudget): an import
 * whose map does not fit waits, reading no more of its stream, until other imports give theirs
 * back, and a cancelled wait takes nothing.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IMPORT_MAP_BUDGET, type InChannel } from '../../src/engine/streams';
import { engineWithSnapshot, finished, secondEngine } from '../helpers/engine';
import { makeImage } from '../helpers/images';

const BS = 64 * 1024;

/** A channel serving `bytes`, noting how many it has handed out. */
function channelOf(bytes: Buffer): InChannel & { served(): number } {
  let at = 0;
  return {
    async read(max) {
      const out = bytes.subarray(at, Math.min(bytes.length, at + max));
      at += out.length;
      return out;
    },
    close() {},
    served: () => at,
  };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

async function setUp(t: Test) {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 8, filled: 8, disk: 'vm', snapshot: 's1' });
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', join(a.images, 's1.bsnap')));
  const b = await secondEngine(t, a, BS);
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 8 * BS) });
  return { bytes: readFileSync(join(a.images, 's1.bsnap')), b, disk };
}

t.test('an import waits for map bytes other imports hold, then goes on', async (t) => {
  const { bytes, b, disk } = await setUp(t);
  const budget = b.engine.offsite.streams.mapBudget;
  t.equal(budget.limit, IMPORT_MAP_BUDGET);
  // Held as by other imports: what the engine grants is accounting, not memory.
  t.ok(await budget.acquire(IMPORT_MAP_BUDGET));
  const channel = channelOf(bytes);
  const job = b.engine.offsite.streams.startImport(channel, disk.id);
  await until(() => budget.waiting === 1);
  t.equal(b.engine.getJob(job.id).state, 'running', 'the import waits');
  budget.release(IMPORT_MAP_BUDGET);
  await finished(b.engine, job);
  t.equal(channel.served(), bytes.length, 'and then reads the whole stream');
  t.equal(budget.inFlight, 0, 'its map bytes are given back when it ends');
});

t.test('an import cancelled while it waits for map bytes takes none', async (t) => {
  const { bytes, b, disk } = await setUp(t);
  const budget = b.engine.offsite.streams.mapBudget;
  t.ok(await budget.acquire(IMPORT_MAP_BUDGET));
  const job = b.engine.offsite.streams.startImport(channelOf(bytes), disk.id);
  await until(() => budget.waiting === 1);
  b.engine.cancelJob(job.id);
  t.equal((await b.engine.waitJob(job.id)).state, 'cancelled');
  t.equal(budget.waiting, 0);
  budget.release(IMPORT_MAP_BUDGET);
  t.equal(budget.inFlight, 0, 'nothing is left held');
});

t.test('a failed import gives its map bytes back', async (t) => {
  const { bytes, b, disk } = await setUp(t);
  const budget = b.engine.offsite.streams.mapBudget;
  const cut = bytes.subarray(0, bytes.length - 40);
  const job = await b.engine.waitJob(b.engine.offsite.streams.startImport(channelOf(cut), disk.id).id);
  t.equal(job.error?.code, 'StreamCorrupt');
  t.equal(budget.inFlight, 0);
});
