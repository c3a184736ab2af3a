/**
 * A qcow2 rollback renames a new image over the disk: the inode flags a host sets on images
 * (chattr +d so backups skip them, +A) and the project id its quota counts them under must be on
 * the new one too. Judged by lsattr on real files: the test's own filesystem for the flags, and a
 * loop-mounted XFS for the project id (ext4 takes one only with quota support in the kernel).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import { finished, snapshot } from '../helpers/engine';
import { check, haveQemu, qemuImg, qemuIo, run } from '../helpers/qemu';

/** lsattr -p: the project id and the flag letters. */
function attrs(path: string): { project: number; flags: string } {
  const r = run('lsattr', ['-p', '-d', path]);
  const m = /^\s*(\d+)\s+(\S+)\s/.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`lsattr -p ${path}: ${r.stderr}`);
  return { project: Number(m[1]), flags: m[2]!.replace(/-/g, '') };
}

/** Rolls back a qcow2 disk in `images` after setting `chattr` on it; returns lsattr before and after. */
async function rollBackWith(t: Test, base: string, images: string, chattr: string[]) {
  const engine = await Engine.open({ dataDir: join(base, 'data'), imageRoots: [images] });
  t.teardown(() => engine.close());
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '16M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 4M');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 8M');
  const set = run('chattr', [...chattr, img]);
  if (set.status !== 0) return { skip: `chattr ${chattr.join(' ')} on ${images}: ${set.stderr.trim()}` };
  const before = attrs(img);
  const ino = statSync(img).ino;
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.not(statSync(img).ino, ino, 'a new image was renamed over the disk');
  t.equal(check(img).status, 0, 'qemu-img check clean');
  return { before, after: attrs(img) };
}

const missing = haveQemu() || (spawnSync('lsattr', ['-V']).error ? 'lsattr is not installed (apt-get install e2fsprogs)' : false);
if (missing) t.plan(0, missing);
else {
  t.test('a qcow2 rollback keeps the disk file\'s inode flags', async (t) => {
    const dir = t.testdir();
    const images = join(dir, 'images');
    mkdirSync(images);
    const r = await rollBackWith(t, dir, images, ['+d', '+A']);
    if ('skip' in r) return t.plan(0, r.skip);
    t.match(r.before.flags, /d/, 'nodump set');
    t.match(r.before.flags, /A/, 'noatime set');
    t.equal(r.after.flags, r.before.flags, `the new image has the same flags (${r.before.flags})`);
  });

  t.test('a qcow2 rollback keeps the disk file\'s project id', async (t) => {
    if (process.getuid?.() !== 0) return t.plan(0, 'mounting an XFS image needs root');
    const base = mkdtempSync(join(tmpdir(), 'bsp-'));
    t.teardown(() => rmSync(base, { recursive: true, force: true }));
    const image = join(base, 'xfs.img');
    const mnt = join(base, 'mnt');
    mkdirSync(mnt);
    // 320 MiB is the least mkfs.xfs makes; the file is sparse.
    for (const [cmd, args] of [['truncate', ['-s', '320M', image]], ['mkfs.xfs', ['-q', image]], ['mount', ['-o', 'loop', image, mnt]]] as const) {
      const r = run(cmd, [...args]);
      if (r.status !== 0) return t.plan(0, `cannot mount an XFS image: ${cmd}: ${(r.stderr || `exit ${r.status}`).trim()}`);
    }
    t.teardown(() => { run('umount', ['-l', mnt]); });
    const images = join(mnt, 'images');
    mkdirSync(images);
    const r = await rollBackWith(t, base, images, ['-p', '42', '+d']);
    if ('skip' in r) return t.plan(0, r.skip);
    t.equal(r.before.project, 42, 'project id set');
    t.same(r.after, r.before, 'the new image has the same project id and flags');
  });
}
