/**
 * The store lock and slow senders (docs/design.md "Locking"). A stream import holds the shared
 * store lock from its first block to its commit; a queued gc holds every later snapshot back
 * behind it. So an import takes the lock only once its first block has arrived, and any job
 * queued for the lock ends at once when cancelled, and the lock's queue goes on without it.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Job } from '../../src/engine/types';
import { engineWithSnapshot, finished, secondEngine, snapshot, type Fixture } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';
import { stalledSender } from '../helpers/stalled-sender';

const BS = 64 * 1024;
// Short of "forever" (the lock these jobs queue for is never given), long enough for a catalog
// commit that waits behind others' writeback on a loaded machine.
const ENDS_WITHIN_MS = 60_000;

/**
 * Starts an import of `bytes` into disk `in` whose sender stalls in the middle of the last block,
 * and waits until the import has stored the 7 whole blocks before it: it holds the store lock and
 * waits for the rest. `free()` sends the rest and waits for the import to commit.
 */
async function importHoldingLock(b: Fixture, bytes: Buffer): Promise<{ imp: Job; free(): Promise<void> }> {
  const sender = stalledSender(bytes, bytes.length - BS / 2);
  const imp = b.engine.offsite.streams.startImport(sender.channel, 'in');
  await until(() => b.engine.getJob(imp.id).doneBytes === 7 * BS);
  return {
    imp,
    async free() {
      sender.resume();
      await finished(b.engine, imp);
    },
  };
}

/** Lets a job just started run up to its first wait. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

/** Waits for the job to end, failing the test if that takes anywhere near "forever". */
async function endsSoon(t: Test, b: Fixture, job: Job): Promise<Job> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`job ${job.kind} did not end within ${ENDS_WITHIN_MS} ms`)), ENDS_WITHIN_MS); });
  try {
    return await Promise.race([b.engine.waitJob(job.id), late]);
  } finally {
    clearTimeout(timer);
    t.pass(`the ${job.kind} ended`);
  }
}

/**
 * Host b, with an empty disk `in` to import into and a disk `other` with data of its own, and the
 * stream of a. `firstBlockAt`: the stream's offset of its first block record.
 */
async function setUp(t: Test) {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 8, filled: 8, disk: 'vm', snapshot: 's1' });
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', join(a.images, 's1.bsnap')));
  const bytes = readFileSync(join(a.images, 's1.bsnap'));
  const b = await secondEngine(t, a, BS);
  await b.engine.addDisk({ path: makeImage(join(b.images, 'in.raw'), 8 * BS), name: 'in' });
  const other = makeImage(join(b.images, 'other.raw'), 8 * BS);
  fillBlock(other, 0, BS, 'other-0');
  await b.engine.addDisk({ path: other, name: 'other' });
  // The map names block 0 first; its record is the digest's last occurrence.
  const digest0 = createHash('sha256').update(readFileSync(a.img).subarray(0, BS)).digest();
  const firstBlockAt = bytes.lastIndexOf(digest0) - 1;
  return { bytes, b, firstBlockAt };
}

t.test('an import whose sender stops before its first block has arrived holds no store lock', async (t) => {
  const { bytes, b, firstBlockAt } = await setUp(t);
  // The map and part of the first block: the sender stops there.
  const sender = stalledSender(bytes, firstBlockAt + 1000);
  const imp = b.engine.offsite.streams.startImport(sender.channel, 'in');
  await until(() => sender.served() === firstBlockAt + 1000);
  await finished(b.engine, b.engine.startGc());
  t.ok(await snapshot(b.engine, 'other', 'o1'), 'a gc and a snapshot of another disk run meanwhile');
  sender.resume();
  await finished(b.engine, imp);
});

t.test('a snapshot queued for the lock behind a gc ends at once when cancelled, and the queue goes on', async (t) => {
  const { bytes, b } = await setUp(t);
  const held = await importHoldingLock(b, bytes);
  const gc = b.engine.startGc();
  const snap = b.engine.startSnapshot('other', { name: 'o1' });
  await settle();
  t.equal(b.engine.getJob(snap.id).state, 'running', 'the snapshot waits behind the gc');
  b.engine.cancelJob(snap.id);
  t.match(await endsSoon(t, b, snap), { state: 'cancelled', error: { code: 'Cancelled', message: /while waiting for the store lock/ } });
  t.same(b.engine.listSnapshots('other').map((s) => s.name), [], 'the cancelled snapshot disappears');
  t.equal(b.engine.getJob(gc.id).state, 'running', 'the gc still waits for the import');
  await held.free();
  await finished(b.engine, gc);
  t.ok(await snapshot(b.engine, 'other', 'o2'), 'a later snapshot gets the lock');
});

t.test('a gc queued for the lock ends at once when cancelled, and lets the snapshots behind it in', async (t) => {
  const { bytes, b } = await setUp(t);
  const held = await importHoldingLock(b, bytes);
  const gc = b.engine.startGc();
  const snap = b.engine.startSnapshot('other', { name: 'o1' });
  await settle();
  b.engine.cancelJob(gc.id);
  t.match(await endsSoon(t, b, gc), { state: 'cancelled', error: { message: /while waiting for the store lock/ } });
  t.match(await endsSoon(t, b, snap), { state: 'succeeded' }, 'the snapshot ran beside the import');
  await held.free();
});

t.test('closing the engine ends a job queued for the lock, saying the daemon was shutting down', async (t) => {
  const { bytes, b } = await setUp(t);
  await importHoldingLock(b, bytes);
  const gc = b.engine.startGc();
  await settle();
  const closing = b.engine.close();
  t.match(await endsSoon(t, b, gc), { state: 'cancelled', error: { message: /shutting down.*while waiting for the store lock/ } });
  await closing;
});

t.test('a cancelled import that waits for its sender after its first block gives the lock back', async (t) => {
  const { bytes, b } = await setUp(t);
  const held = await importHoldingLock(b, bytes);
  b.engine.cancelJob(held.imp.id);
  t.match(await endsSoon(t, b, held.imp), { state: 'cancelled' });
  await finished(b.engine, b.engine.startGc());
});

t.test('a snapshot of a copy-on-write disk cancelled while it waits for the lock leaves no frozen layer', async (t) => {
  const { bytes, b } = await setUp(t);
  await snapshot(b.engine, 'other', 'o1');
  await b.engine.cloneCow('o1', 'c');
  const held = await importHoldingLock(b, bytes);
  const gc = b.engine.startGc();
  const snap = b.engine.startSnapshot('c', { name: 'c1' });
  await settle();
  b.engine.cancelJob(snap.id);
  t.match(await endsSoon(t, b, snap), { state: 'cancelled', error: { message: /while waiting for the store lock/ } });
  t.equal(b.engine.getDisk('c').cow!.layers.length, 1, 'the disk still has its one writable layer');
  await held.free();
  await finished(b.engine, gc);
  t.ok(await snapshot(b.engine, 'c', 'c2'));
});
