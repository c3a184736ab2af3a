/**
 * A qcow2 rollback writes a whole new image beside the disk and renames it over the disk file.
 * The daemon SIGKILLed while it writes must leave the old image intact, and nothing of the
 * half-written image (as large as the disk) beside it: it has no name until complete, and where
 * the filesystem cannot do that (no O_TMPFILE) the next start removes it from under its temp name,
 * since a disk removed instead of rolled back again would otherwise leave it forever. The next
 * start also clears the journal, the disk file being the one journaled (the rename never
 * happened): the disk takes snapshots at once. Killed after the rename (the disk file is another
 * one), or with a journal an older version wrote (no disk file recorded), the journal stays and a
 * rerun completes the rollback.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import type { Disk, Job } from '../../src/engine/types';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { DaemonProcess, connect, makeLayout, sleep, type Layout } from './daemon-process';

const MiB = 1024 * 1024;

interface Killed { layout: Layout; img: string; changed: string; base: string; dir: string }

/** The name the rollback gave its new image (random per attempt), if it has one beside the disk now. */
function tempIn(imageRoot: string): string | undefined {
  const name = readdirSync(imageRoot).find((n) => /^\.vm\.qcow2\.blocksnap-rollback-[0-9a-f]{16}$/.test(n));
  return name === undefined ? undefined : join(imageRoot, name);
}

/**
 * A 512 MiB qcow2 disk with a snapshot, changed since, and a daemon frozen (SIGSTOP) while it
 * writes the new image of a rollback to that snapshot, then killed. The disk file is checked to
 * be the old image, whole.
 */
async function killedMidRollback(t: Test, env: NodeJS.ProcessEnv, frozen: (imageRoot: string) => void): Promise<Killed> {
  const dir = mkdtempSync(join(tmpdir(), 'bsq-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = makeLayout(dir);
  const img = join(layout.imageRoot, 'vm.qcow2');
  // Large enough that the new image is still being written when the daemon is frozen.
  qemuImg('create', '-f', 'qcow2', img, '512M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 512M');
  const base = join(dir, 'base.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, base);
  const d = await DaemonProcess.start(layout, [], env);
  t.teardown(() => d.kill());
  const c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'vm' });
  const snap = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true });
  t.equal(snap.state, 'succeeded');
  qemuIo(img, 'qcow2', 'write -P 0x42 0 512M');
  const changed = join(dir, 'changed.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, changed);

  const job = await c.call<Job>('rollback', { disk: 'vm', snapshot: 'base', wait: false });
  let now = job;
  for (let i = 0; i < 20_000 && now.state === 'running' && now.doneBytes < 64 * MiB; i++) {
    await sleep(1);
    now = await c.call<Job>('job.show', { job: job.id });
  }
  t.equal(now.state, 'running', 'the rollback was writing its new image');
  t.ok(now.doneBytes < now.totalBytes, 'and far from done');
  process.kill(d.pid, 'SIGSTOP');
  frozen(layout.imageRoot);
  await d.kill();
  c.close();
  t.equal(compare(img, 'qcow2', changed, 'raw').status, 0, 'the disk file is the old image, whole');
  return { layout, img, changed, base, dir };
}

async function vmDisk(c: Awaited<ReturnType<typeof connect>>): Promise<Disk> {
  return (await c.call<Disk[]>('disk.list')).find((x) => x.name === 'vm')!;
}

/** The restart after a kill before the rename: nothing journaled, nothing left beside the disk, the disk as it was and snapshotted. */
async function restartedUntouched(t: Test, k: Killed, env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
  const d = await DaemonProcess.start(k.layout, [], env);
  t.teardown(() => d.kill());
  const c = await connect(k.layout);
  t.teardown(() => c.close());
  t.equal((await vmDisk(c)).pendingRollback, null, 'the start cleared the journal: the disk file is the one journaled');
  t.equal(tempIn(k.layout.imageRoot), undefined, 'nothing of the half-written new image is left');
  t.same(readdirSync(k.layout.imageRoot), ['vm.qcow2']);
  t.equal(compare(k.img, 'qcow2', k.changed, 'raw').status, 0, 'and the disk file is left alone');
  await d.waitForLog(/recovered from an unclean stop/);
  t.match(d.stderr(), /"rollbacksCleared":\["d-[0-9a-f]{16}"\]/, 'the start logged the cleared journal');
  t.match((await c.call<Job[]>('job.list')).find((j) => j.kind === 'rollback'), {
    state: 'interrupted', error: { message: /, before its new image replaced the disk file: disk vm is as it was and takes snapshots as before$/ },
  }, 'the job\'s error says the disk is as it was');
  const after = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'after', wait: true });
  t.equal(after.state, 'succeeded', 'a snapshot of the disk works at once');
  return d;
}

t.test('a qcow2 rollback killed mid-write leaves the old image, no trace of the new one, and no journal after a restart', { skip: haveQemu() }, async (t) => {
  const k = await killedMidRollback(t, {}, (imageRoot) => {
    t.same(readdirSync(imageRoot), ['vm.qcow2'], 'the new image being written has no name');
  });
  await restartedUntouched(t, k);
});

t.test('without O_TMPFILE, a qcow2 rollback killed mid-write leaves its temp file, and the next start removes it', { skip: haveQemu() }, async (t) => {
  const k = await killedMidRollback(t, { BLOCKSNAP_NO_TMPFILE: '1' }, (imageRoot) => {
    const temp = tempIn(imageRoot);
    t.ok(temp !== undefined && statSync(temp).size > 8 * MiB, 'the half-written new image is under its temp name');
  });
  const d = await restartedUntouched(t, k, { BLOCKSNAP_NO_TMPFILE: '1' });
  t.match(d.stderr(), /"rollbackTempFiles":1/);
});

/** After the restart: the journal stays, snapshots are refused, and a rerun completes the rollback to `base`. */
async function rerunCompletes(t: Test, k: Killed): Promise<void> {
  const d = await DaemonProcess.start(k.layout);
  t.teardown(() => d.kill());
  const c = await connect(k.layout);
  t.teardown(() => c.close());
  t.match((await vmDisk(c)).pendingRollback, { snapshotId: /^s-/ }, 'the rollback is still journaled');
  await t.rejects(c.call('snapshot.create', { disk: 'vm', wait: true }), { code: 'RollbackIncomplete' }, 'snapshots are refused');
  const rerun = await c.call<Job>('rollback', { disk: 'vm', snapshot: 'base', wait: true });
  t.equal(rerun.state, 'succeeded', `the rerun completes it (${rerun.error?.message ?? ''})`);
  t.equal(compare(k.img, 'qcow2', k.base, 'raw').status, 0, 'the disk holds the snapshot');
  t.equal((await vmDisk(c)).pendingRollback, null);
}

t.test('a qcow2 rollback killed after its rename stays journaled, and a rerun completes it', { skip: haveQemu() }, async (t) => {
  const k = await killedMidRollback(t, {}, () => {});
  // The state a kill between the rename and the journal's clearing leaves: the disk's name is
  // another file (the new image, complete) than the one journaled.
  const renamed = join(k.dir, 'new.qcow2');
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', k.base, renamed);
  renameSync(renamed, k.img);
  await rerunCompletes(t, k);
});

t.test('a qcow2 rollback journaled without its disk file (by an older version) stays journaled after a kill', { skip: haveQemu() }, async (t) => {
  const k = await killedMidRollback(t, {}, () => {});
  const catalog = Catalog.open(k.layout.dataDir, 64 * 1024);
  const disk = catalog.allDisks().find((x) => x.name === 'vm')!;
  const { imageBefore, ...old } = disk.pendingRollback!;
  t.ok(imageBefore, 'this version journals the disk file');
  catalog.txn(() => catalog.putDisk({ ...disk, pendingRollback: old }));
  await catalog.close();
  await rerunCompletes(t, k);
});
