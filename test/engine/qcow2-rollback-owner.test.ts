/**
 * A qcow2 rollback renames a new image over the disk, and the new file is the daemon's until it
 * is given the disk's owner and group. A daemon not running as root can give it neither another
 * user nor a group it is not a member of: the disk would silently become the daemon's, and its
 * owner (QEMU's user) could no longer open it, with only root to give it back. So such a rollback
 * is refused when asked, naming owner and group, before anything is written or journaled.
 *
 * The engine runs as another user in a child process (setpriv), as a daemon of that user would:
 * it is in the disk's group, as a daemon sharing images with QEMU through a group is, but the
 * disk is owned by QEMU's user. Skips, saying so, where the test cannot switch users.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import { finished, snapshot } from '../helpers/engine';
import { check, haveQemu, qemuImg, qemuIo, run } from '../helpers/qemu';
import type { RollbackChildReport } from './rollback-child';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');
/** The daemon's user, QEMU's user (the disk's owner), and the group both are in. No passwd entries needed. */
const DAEMON = 4242;
const QEMU = 4244;
const SHARED = 4243;

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'running the engine as another user needs root';
  if (spawnSync('setpriv', ['--version']).error) return 'setpriv is not installed (apt-get install util-linux)';
  return haveQemu();
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (!statSync(path).isDirectory()) return;
  for (const name of readdirSync(path)) chownTree(join(path, name), uid, gid);
}

function fileState(path: string): Record<string, unknown> {
  const st = statSync(path, { bigint: true });
  return { ino: st.ino, ctime: st.ctimeNs, mode: st.mode, uid: st.uid, gid: st.gid, sha256: createHash('sha256').update(readFileSync(path)).digest('hex') };
}

const skip = skipReason();
if (skip) t.plan(0, skip);
else t.test('a daemon not running as root refuses a qcow2 rollback that would give the disk to its own user', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bso-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '16M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 4M');
  let engine = await Engine.open({ dataDir, imageRoots: [images] });
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  await engine.close();
  qemuIo(img, 'qcow2', 'write -P 0x42 0 8M');
  // The libvirt layout: QEMU's user owns the disk, a group it shares with the daemon may write it.
  chownSync(images, QEMU, SHARED);
  chmodSync(images, 0o2770);
  chownSync(img, QEMU, SHARED);
  chmodSync(img, 0o660);
  chownTree(dataDir, DAEMON, DAEMON);
  const before = fileState(img);
  const namesBefore = readdirSync(images).sort();

  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'rollback-child.ts'))})`;
  // Without the test runner's NODE_OPTIONS: its hooks would write their reports where this user may not.
  const child = spawnSync('setpriv', [`--reuid=${DAEMON}`, `--regid=${DAEMON}`, `--groups=${SHARED}`, '--', 'env', '-u', 'NODE_OPTIONS',
    process.execPath, '-e', main, dataDir, images, disk.id, snap.id], { cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 300_000 });
  t.equal(child.status, 0, `the child engine ran: ${child.stderr}`);
  const report = JSON.parse(child.stdout.trim().split('\n').pop()!) as RollbackChildReport;

  t.equal(report.job, null, 'no rollback job started');
  t.match(report.refused, { code: 'PermissionDenied', details: { path: img, syscall: 'fchown' } }, 'refused when asked');
  t.match(report.refused?.message ?? '', new RegExp(`owner and group of .*vm\\.qcow2, user ${QEMU} and group ${SHARED} \\(fchown: .*EPERM.*\\); the rollback is refused`),
    'the refusal names the owner and the group');
  t.match(report.refused?.message ?? '', /daemon's user \(uid 4242\).*Run the daemon as root, or clone the snapshot to a new image instead/, 'and says what to do');
  t.equal(report.pendingRollback, null, 'nothing journaled');
  t.same(report.snapshot, { state: 'succeeded', error: null }, 'the disk takes snapshots right after (no RollbackIncomplete)');
  t.same(fileState(img), before, 'the disk file is as it was: inode, bytes, owner, group, mode');
  t.same(readdirSync(images).sort(), namesBefore, 'no scratch file or new image left beside the disk');
  t.equal(run('setpriv', [`--reuid=${QEMU}`, `--regid=${QEMU}`, `--groups=${SHARED}`, '--', 'head', '-c', '4', img]).status, 0, 'QEMU\'s user still opens its disk');

  // A root daemon gives the new image the owner and group: the same rollback goes through.
  chownTree(dataDir, 0, 0);
  engine = await Engine.open({ dataDir, imageRoots: [images] });
  t.teardown(() => engine.close());
  await finished(engine, engine.startRollback(disk.id, snap.id));
  const after = statSync(img);
  t.not(after.ino, Number(before.ino), 'a new image was renamed over the disk');
  t.same([after.uid, after.gid, after.mode & 0o7777], [QEMU, SHARED, 0o660], 'owned by QEMU\'s user and group, mode kept');
  t.equal(check(img).status, 0, 'qemu-img check clean');
});
