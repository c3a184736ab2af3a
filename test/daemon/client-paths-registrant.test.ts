/**
 * A disk a client that is neither root nor the daemon's user registered is opened afterwards only
 * as far as that client's user could: the file at its path, or the backing file its header names,
 * may since have become one that user may not read or write.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Disk, Job } from '../../src/engine/types';
import { clientFixture as fixture, KiB64, notRoot, ROOT, USER, type ClientFixture } from './fixtures/client-context';

const noQemuImg = notRoot || spawnSync('qemu-img', ['--version']).status !== 0 ? 'needs root and qemu-img' : false;

function qemuImg(...args: string[]): void {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

/** USER's disk `mine` on `u/mine.raw` in a directory of USER's, and a root-only file `u/root.raw` beside it. */
async function userDiskBesideRootFile(f: ClientFixture): Promise<{ mine: string; rootFile: string }> {
  f.dir('u', USER, 0o755);
  const mine = f.image('u/mine.raw', USER, 0o600);
  await f.call<Disk>('disk.add', { path: mine, name: 'mine' });
  return { mine, rootFile: f.image('u/root.raw', ROOT, 0o600) };
}

async function snapshot(f: ClientFixture, name: string, who?: { uid: number }): Promise<Job> {
  return await f.call<Job>('snapshot.create', { disk: 'mine', name, wait: true }, who);
}

t.test('a disk records the client that registered it, and shows its uid', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  await userDiskBesideRootFile(f);
  t.same(f.engine.getDisk('mine').registeredBy, { uid: USER.uid });
  await f.call<Disk>('disk.add', { path: f.image('r.raw', ROOT, 0o600), name: 'r' }, { uid: 0 });
  t.equal(f.engine.getDisk('r').registeredBy, null, 'root registered it: nothing recorded');
});

t.test('a snapshot refuses a backing file the registering user may no longer read', { skip: noQemuImg }, async (t) => {
  const f = await fixture(t);
  f.dir('u', USER, 0o755);
  const base = f.image('u/base.raw', USER, 0o600);
  const top = join(f.images, 'u/top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top);
  chownSync(top, USER.uid, USER.gid);
  await f.call<Disk>('disk.add', { path: top, name: 'mine' });
  t.equal((await snapshot(f, 'own')).state, 'succeeded', 'its own chain is read');
  const secret = f.image('secret.raw', ROOT, 0o600);
  qemuImg('rebase', '-u', '-b', secret, '-F', 'raw', top);
  const job = await snapshot(f, 'leak');
  t.equal(job.state, 'failed');
  t.match(job.error, { code: 'NotAuthorized', message: new RegExp(`^disk mine was registered by uid ${USER.uid}.*may not read ${secret}`) });
});

t.test('a snapshot refuses a root-only file renamed over the disk\'s image', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const { mine, rootFile } = await userDiskBesideRootFile(f);
  renameSync(rootFile, mine);
  const job = await snapshot(f, 'leak');
  t.equal(job.state, 'failed');
  t.match(job.error, { code: 'NotAuthorized', message: new RegExp(`^disk mine was registered by uid ${USER.uid}.*may not read ${mine}`) });
});

t.test('a rollback refuses a root-only file renamed over the disk\'s image, and leaves it as it was', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const { mine, rootFile } = await userDiskBesideRootFile(f);
  t.equal((await snapshot(f, 'good')).state, 'succeeded');
  const before = readFileSync(rootFile);
  renameSync(rootFile, mine);
  await t.rejects(f.call('rollback', { disk: 'mine', snapshot: 'good', wait: true }), {
    code: 'NotAuthorized', message: new RegExp(`^disk mine was registered by uid ${USER.uid}.*may not read ${mine}`),
    details: { diskId: f.engine.getDisk('mine').id, registeredUid: USER.uid, path: mine },
  });
  t.ok(readFileSync(mine).equals(before), 'root\'s file is unchanged');
});

t.test('a disk of the client\'s own keeps being snapshotted and rolled back', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const { mine } = await userDiskBesideRootFile(f);
  const first = readFileSync(mine);
  t.equal((await snapshot(f, 'a')).state, 'succeeded');
  writeFileSync(mine, Buffer.alloc(KiB64, 7), { flag: 'r+' });
  t.equal((await snapshot(f, 'b')).state, 'succeeded');
  t.equal((await f.call<Job>('rollback', { disk: 'mine', snapshot: 'a', wait: true })).state, 'succeeded');
  t.ok(readFileSync(mine).equals(first));
});

t.test('a disk root registered is opened with the daemon\'s rights, whatever file is at its path', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  f.dir('u', USER, 0o755);
  const path = f.image('u/r.raw', ROOT, 0o600);
  await f.call<Disk>('disk.add', { path, name: 'mine' }, { uid: 0 });
  renameSync(f.image('u/other.raw', ROOT, 0o600), path);
  t.equal((await snapshot(f, 'r1', { uid: 0 })).state, 'succeeded');
  t.equal((await snapshot(f, 'r2')).state, 'succeeded', 'whoever asks');
});

t.test('root relocating a disk takes it over; another client relocating it records its own rights', { skip: notRoot }, async (t) => {
  const f = await fixture(t);
  const { mine, rootFile } = await userDiskBesideRootFile(f);
  const other = { uid: 23457, gid: 23400, groups: [23400] };
  chownSync(mine, other.uid, other.gid);
  await f.call<Disk>('disk.relocate', { disk: 'mine', path: mine }, { uid: other.uid, credentials: other });
  t.same(f.engine.getDisk('mine').registeredBy, { uid: other.uid });
  await f.call<Disk>('disk.relocate', { disk: 'mine', path: mine }, { uid: 0 });
  t.equal(f.engine.getDisk('mine').registeredBy, null);
  renameSync(rootFile, mine);
  t.equal((await snapshot(f, 'r1')).state, 'succeeded', 'the disk is root\'s now');
});
