/**
 * A raw rollback rewrites its disk's image in place, once it has compared the image and checked
 * every stored block it needs, and its journal records that it writes (`writesBegun`) before its
 * first write. The daemon SIGKILLed while the rollback compares and checks left the image as it
 * was: the next start clears the journal, the disk takes snapshots at once and the job's error
 * says so. Killed while it writes, the image is partly rolled back: the journal stays, snapshots
 * are refused, and a rerun completes the rollback.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import type { PendingRollbackRecord } from '../../src/catalog/records';
import type { Disk, Job } from '../../src/engine/types';
import { makeImage, randomData, sha256File, writeAt } from '../helpers/images';
import { DaemonProcess, connect, makeLayout, sleep, type Layout } from './daemon-process';

const MiB = 1024 * 1024;
// Large enough that the compare pass and the write pass each take a while on a fast machine.
const SIZE = 512 * MiB;

interface Killed { layout: Layout; img: string; base: string; changed: string; job: Job; journal: PendingRollbackRecord | null }

function fillRandom(img: string): void {
  for (let off = 0; off < SIZE; off += 8 * MiB) writeAt(img, off, randomData(8 * MiB));
}

/**
 * A 512 MiB raw disk with snapshot `base`, every block changed since, and a daemon killed
 * (frozen by SIGSTOP first, so that it stops where it was seen) during a rollback to `base`,
 * once `when` says so. The journal the kill left is read from the catalog.
 */
async function killedDuringRollback(t: Test, when: (c: Awaited<ReturnType<typeof connect>>, job: Job) => Promise<void>): Promise<Killed> {
  const dir = mkdtempSync(join(tmpdir(), 'bsr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir);
  const img = join(layout.imageRoot, 'vm.raw');
  makeImage(img, SIZE);
  fillRandom(img);
  const base = await sha256File(img);
  const d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'vm' });
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true })).state, 'succeeded');
  fillRandom(img);
  const changed = await sha256File(img);

  const job = await c.call<Job>('rollback', { disk: 'vm', snapshot: 'base', wait: false });
  await when(c, job);
  process.kill(d.pid, 'SIGSTOP');
  await d.kill();
  c.close();
  const catalog = Catalog.open(layout.dataDir, 64 * 1024);
  const journal = catalog.allDisks().find((x) => x.name === 'vm')!.pendingRollback;
  await catalog.close();
  return { layout, img, base, changed, job, journal };
}

async function restarted(t: Test, k: Killed): Promise<{ d: DaemonProcess; c: Awaited<ReturnType<typeof connect>> }> {
  const d = await DaemonProcess.start(k.layout);
  t.teardown(() => d.kill());
  const c = await connect(k.layout);
  t.teardown(() => c.close());
  return { d, c };
}

t.test('a raw rollback killed while it compares and checks leaves the disk as it was, and the restart says so', async (t) => {
  // At once: the compare pass of 512 MiB has barely begun when the answer comes back.
  const k = await killedDuringRollback(t, async () => {});
  t.match(k.journal, { jobId: k.job.id, writesBegun: false }, 'killed before the rollback journaled its first write');
  t.equal(await sha256File(k.img), k.changed, 'the image is as it was');
  const { d, c } = await restarted(t, k);
  t.equal((await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback, null, 'the start cleared the journal');
  await d.waitForLog(/recovered from an unclean stop/);
  t.match(d.stderr(), /"rollbacksCleared":\["d-[0-9a-f]{16}"\]/, 'and logged it');
  t.match(await c.call<Job>('job.show', { job: k.job.id }), {
    state: 'interrupted', error: { code: 'Interrupted', message: /before it wrote anything: disk vm is as it was and takes snapshots as before$/ },
  }, 'the job\'s error says the disk is as it was');
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'after', wait: true })).state, 'succeeded', 'a snapshot of the disk works at once');
  await t.rejects(c.call('rollback', { disk: 'vm', abandon: true }), { code: 'RollbackNotPending' }, 'there is nothing to abandon');
  t.equal(await sha256File(k.img), k.changed, 'and the image is still as it was');
});

t.test('a raw rollback killed while it writes stays journaled, and a rerun completes it', async (t) => {
  // Once the job says it writes and its progress has moved on since, a block has been written:
  // the progress seen lags the rollback's, never leads it.
  const k = await killedDuringRollback(t, async (c, job) => {
    let now = job;
    let writingFrom: number | null = null;
    for (let i = 0; i < 60_000 && now.state === 'running' && !(writingFrom !== null && now.doneBytes > writingFrom); i++) {
      await sleep(1);
      now = await c.call<Job>('job.show', { job: job.id });
      if (now.phase === 'writing' && writingFrom === null) writingFrom = now.doneBytes;
    }
    t.equal(now.state, 'running', 'the rollback was writing');
    t.equal(now.phase, 'writing', 'and said so');
  });
  t.match(k.journal, { jobId: k.job.id, writesBegun: true }, 'the journal says the rollback writes');
  const partly = await sha256File(k.img);
  t.not(partly, k.changed, 'the rollback had written');
  const { c } = await restarted(t, k);
  t.match((await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback, { jobId: k.job.id }, 'the journal stays');
  await t.rejects(c.call('snapshot.create', { disk: 'vm', wait: true }), { code: 'RollbackIncomplete' }, 'snapshots are refused');
  const rerun = await c.call<Job>('rollback', { disk: 'vm', snapshot: 'base', wait: true });
  t.equal(rerun.state, 'succeeded', `the rerun completes it (${rerun.error?.message ?? ''})`);
  t.equal(await sha256File(k.img), k.base, 'the disk holds the snapshot');
  t.equal((await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback, null);
});
