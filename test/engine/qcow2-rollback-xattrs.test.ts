/**
 * A qcow2 rollback renames a new image over the disk: what a VM host keeps in the old image's
 * extended attributes (a POSIX ACL admitting the VM's user, libvirt's labels, user.* of tools)
 * must be on the new one, or the VM may not open its disk after the rollback. Judged by the
 * attr and acl tools (getfattr, getfacl) on real files.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { check, compare, haveQemu, must, qemuImg, qemuIo, run } from '../helpers/qemu';
import type { CloneResult } from '../../src/engine/types';
import type { RollbackChildReport } from './rollback-child';

function missingTools(): string | false {
  const qemu = haveQemu();
  if (qemu) return qemu;
  for (const [tool, pkg] of [['getfattr', 'attr'], ['setfattr', 'attr'], ['getfacl', 'acl'], ['setfacl', 'acl']] as const) {
    if (spawnSync(tool, ['--version']).error) return `${tool} is not installed (apt-get install ${pkg})`;
  }
  return false;
}

const missing = missingTools();

/** Every attribute getfattr sees (all namespaces the process may read), hex-encoded. */
function allAttributes(path: string): string {
  return must('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'hex', path]);
}

if (missing) t.plan(0, missing);
else t.test('a qcow2 rollback keeps the image\'s extended attributes and POSIX ACL', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '16M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 4M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = (await finished(engine, engine.startClone(snap.id, join(images, 'want.raw'), { format: 'raw' }))).result as CloneResult;
  qemuIo(img, 'qcow2', 'write -P 0x42 0 8M');

  const xattr = run('setfattr', ['-n', 'user.blocksnap-test', '-v', 'kept across the rollback', img]);
  if (xattr.status !== 0) return t.plan(0, `the filesystem of ${images} takes no user.* attributes: ${xattr.stderr.trim()}`);
  const acl = run('setfacl', ['-m', 'u:nobody:r', img]);
  if (acl.status !== 0) return t.plan(0, `the filesystem of ${images} takes no POSIX ACL: ${acl.stderr.trim()}`);
  const before = statSync(img);
  const attributesBefore = allAttributes(img);
  const aclBefore = must('getfacl', ['--absolute-names', img]);
  t.match(aclBefore, /^user:nobody:r--$/m, 'the ACL entry is set');

  await finished(engine, engine.startRollback(disk.id, snap.id));

  const after = statSync(img);
  t.not(after.ino, before.ino, 'a new image was renamed over the disk');
  t.equal(compare(img, 'qcow2', want.path, 'raw').status, 0, 'the disk reads as the snapshot');
  t.equal(check(img).status, 0, 'qemu-img check clean');
  const kept = run('getfattr', ['--absolute-names', '--only-values', '-n', 'user.blocksnap-test', img]);
  t.equal(kept.stdout, 'kept across the rollback', `user.blocksnap-test kept ${kept.stderr}`);
  const aclAfter = must('getfacl', ['--absolute-names', img]);
  t.match(aclAfter, /^user:nobody:r--$/m, 'the ACL still admits nobody');
  t.equal(aclAfter, aclBefore, 'the whole ACL is as it was (entries and mask)');
  t.equal(allAttributes(img), attributesBefore, 'every attribute the daemon may read is as it was (labels included where an LSM sets them)');
  t.equal(after.mode, before.mode, 'mode as it was');
  t.equal(after.uid, before.uid);
  t.equal(after.gid, before.gid);
  t.same(engine.getDisk(disk.id).pendingRollback, null);
});

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');
const CAP_SYS_ADMIN = 21n;

/** The image file as a rollback refused before it started must leave it: the same inode, bytes, times, owner, mode and attributes. */
function fileState(path: string): Record<string, unknown> {
  const st = statSync(path, { bigint: true });
  return {
    ino: st.ino, ctime: st.ctimeNs, mtime: st.mtimeNs, mode: st.mode, uid: st.uid, gid: st.gid,
    sha256: createHash('sha256').update(readFileSync(path)).digest('hex'), attributes: allAttributes(path),
  };
}

/**
 * A disk file with an attribute the daemon may not set: a security.* attribute other than an
 * LSM's label needs CAP_SYS_ADMIN, which a daemon not running as root lacks, and so does one whose
 * service manager bounds its capabilities. The engine runs in a child process started without it
 * (capabilities are per thread, and the engine's native work runs on threads of its own). The
 * rollback must be refused when asked, naming the attribute, with nothing written or journaled:
 * the disk file as it was, no scratch or temp file beside it, and the disk still taking
 * snapshots (an interrupted rollback would refuse them: RollbackIncomplete).
 */
if (!missing) t.test('a qcow2 rollback that cannot keep an attribute is refused before it is journaled', async (t) => {
  if (spawnSync('setpriv', ['--version']).error) return t.plan(0, 'setpriv is not installed (apt-get install util-linux)');
  const dir = t.testdir();
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

  const label = run('setfattr', ['-n', 'security.blocksnap-test', '-v', 'label', img]);
  if (label.status !== 0) return t.plan(0, `setting a security.* attribute needs CAP_SYS_ADMIN: ${label.stderr.trim()}`);
  must('setfattr', ['-n', 'user.blocksnap-test', '-v', 'kept', img]);
  const before = fileState(img);
  const namesBefore = readdirSync(images).sort();

  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'rollback-child.ts'))})`;
  const child = spawnSync('setpriv', ['--bounding-set', '-sys_admin', '--inh-caps', '-sys_admin', '--', process.execPath, '-e', main, dataDir, images, disk.id, snap.id], {
    cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 300_000,
  });
  t.equal(child.status, 0, `the child engine ran: ${child.stderr}`);
  const report = JSON.parse(child.stdout.trim().split('\n').pop()!) as RollbackChildReport;
  t.equal((BigInt(`0x${report.capEff}`) >> CAP_SYS_ADMIN) & 1n, 0n, 'the child engine ran without CAP_SYS_ADMIN');

  t.equal(report.job, null, 'no rollback job started');
  t.match(report.refused, { code: 'PermissionDenied', details: { path: img, syscall: 'fsetxattr' } }, 'refused when asked');
  t.match(report.refused?.message ?? '', /extended attribute security\.blocksnap-test of .*vm\.qcow2 \(fsetxattr: .*EPERM.*\); the rollback is refused/,
    'the refusal names the attribute, as the rollback would after writing the whole image');
  t.equal(report.pendingRollback, null, 'nothing journaled');
  t.same(report.snapshot, { state: 'succeeded', error: null }, 'the disk takes snapshots right after (no RollbackIncomplete)');

  t.same(fileState(img), before, 'the disk file is as it was: inode, bytes, times, owner, mode, attributes');
  t.same(readdirSync(images).sort(), namesBefore, 'no scratch file or new image left beside the disk');

  // With the capability the same rollback goes through and keeps the attribute.
  engine = await Engine.open({ dataDir, imageRoots: [images] });
  t.teardown(() => engine.close());
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.not(statSync(img, { bigint: true }).ino, before.ino, 'a new image was renamed over the disk');
  t.equal(run('getfattr', ['--absolute-names', '--only-values', '-n', 'security.blocksnap-test', img]).stdout, 'label', 'the attribute was kept');
  t.equal(check(img).status, 0, 'qemu-img check clean');
});
