/**
 * A qcow2 rollback renames a new image over the disk: what a VM host keeps in the old image's
 * extended attributes (a POSIX ACL admitting the VM's user, libvirt's labels, user.* of tools)
 * must be on the new one, or the VM may not open its disk after the rollback. Judged by the
 * attr and acl tools (getfattr, getfacl) on real files.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { check, compare, haveQemu, must, qemuImg, qemuIo, run } from '../helpers/qemu';
import type { CloneResult } from '../../src/engine/types';

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
