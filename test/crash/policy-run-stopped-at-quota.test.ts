/**
 * The real daemon, at its automatic quota, killed (SIGKILL) or stopped (SIGTERM) while a policy
 * run's snapshot is being taken. The quota used to delete the oldest available snapshot when the
 * run started, so a run that never produced a snapshot still cost one. Now nothing is deleted
 * before the new snapshot is available: after the restart every good snapshot is there, and the
 * next run brings the disk back within its quota, the failure first.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { DaemonClient } from '../../src/daemon/client';
import type { PolicyRunResult } from '../../src/engine/policies';
import type { Job, Snapshot } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout, sleep, type Layout } from './daemon-process';

const MiB = 1024 * 1024;
const QUOTA = ['--auto-snapshot-quota', '2'];

/** A daemon at quota: disk y (large enough that a snapshot takes a while to scan) with two automatic snapshots of policy yq. */
async function atQuota(t: Test): Promise<{ layout: Layout; d: DaemonProcess; c: DaemonClient; good: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'bsq-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // One thread: the scan of 256 MiB then lasts long enough to be caught in the middle.
  const layout = makeLayout(dir, { threads: 1 });
  const img = join(layout.imageRoot, 'y.raw');
  const fd = openSync(img, 'w', 0o600);
  const chunk = randomBytes(4 * MiB);
  for (let i = 0; i < 64; i++) { chunk.writeUInt32LE(i, 0); writeSync(fd, chunk, 0, chunk.length, i * chunk.length); }
  closeSync(fd);
  const d = await DaemonProcess.start(layout, QUOTA);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'y' });
  await c.call('policy.create', { name: 'yq', hours: [1], enabled: false });
  await c.call('policy.bind', { policy: 'yq', disks: ['y'] });
  const good: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await c.call<PolicyRunResult>('policy.run', { policy: 'yq' });
    t.equal(r.disks[0]!.outcome, 'created');
    good.push(r.disks[0]!.snapshotId!);
  }
  return { layout, d, c, good };
}

/** Starts a policy run and freezes the daemon (SIGSTOP) while the run's snapshot is being scanned. */
async function frozenMidRun(t: Test, d: DaemonProcess, c: DaemonClient): Promise<void> {
  c.call('policy.run', { policy: 'yq' }).catch(() => { /* the daemon goes away under it */ });
  for (let i = 0; i < 20_000; i++) {
    const job = (await c.call<Job[]>('job.list', {})).find((j) => j.kind === 'snapshot' && j.state === 'running');
    if (job && job.doneBytes > 0) {
      process.kill(d.pid, 'SIGSTOP');
      t.ok(job.doneBytes < job.totalBytes, `frozen while the snapshot was being scanned (${job.doneBytes} of ${job.totalBytes} bytes)`);
      return;
    }
    await sleep(1);
  }
  throw new Error('the run\'s snapshot was never seen scanning');
}

async function restartAndCheck(t: Test, layout: Layout, good: string[], failedAs: 'error' | 'gone'): Promise<void> {
  const d = await DaemonProcess.start(layout, QUOTA);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  const snaps = await c.call<Snapshot[]>('snapshot.list', { disk: 'y' });
  t.same(snaps.filter((s) => s.status === 'available').map((s) => s.id), good, 'both good snapshots survived the run');
  const failed = snaps.filter((s) => s.status !== 'available');
  if (failedAs === 'error') t.match(failed, [{ status: 'error', error: { code: 'Interrupted' } }], 'the run\'s snapshot is an Interrupted error');
  else t.same(failed, [], 'the cancelled run\'s snapshot is gone');

  const next = (await c.call<PolicyRunResult>('policy.run', { policy: 'yq' })).disks[0]!;
  t.equal(next.outcome, 'created');
  t.same(next.expired, [...failed.map((s) => s.id), good[0]], 'the next run deleted what the quota needed: the failure first, then the oldest good snapshot');
  t.same((await c.call<Snapshot[]>('snapshot.list', { disk: 'y' })).map((s) => s.id), [good[1], next.snapshotId], 'and the disk is at its quota again');
}

t.test('SIGKILL during a policy run at the automatic quota loses no snapshot', async (t) => {
  const { layout, d, c, good } = await atQuota(t);
  await frozenMidRun(t, d, c);
  await d.kill();
  c.close();
  await restartAndCheck(t, layout, good, 'error');
});

t.test('SIGTERM during a policy run at the automatic quota loses no snapshot', async (t) => {
  const { layout, d, c, good } = await atQuota(t);
  await frozenMidRun(t, d, c);
  // The orderly stop cancels the run's snapshot job.
  process.kill(d.pid, 'SIGTERM');
  process.kill(d.pid, 'SIGCONT');
  t.equal((await d.exited).code, 0, 'the daemon stopped cleanly');
  c.close();
  await restartAndCheck(t, layout, good, 'gone');
});
