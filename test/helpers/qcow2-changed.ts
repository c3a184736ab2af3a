import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { openEngine, snapshot } from './engine';
import { qemuImg, qemuIo } from './qemu';

/**
 * An 8 MiB qcow2 disk `vm` written all 0x41 and snapshotted as `base` (its content also as raw
 * `wanted`, beside the image root), then its first 4 MiB written 0x42, and a copy of it as
 * changed, `other.qcow2`, beside the image: what a test renames over the disk's path.
 */
export async function qcow2ChangedSinceBase(t: Test) {
  const f = await openEngine(t);
  const img = join(f.images, 'vm.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '8M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 8M');
  const disk = await f.engine.addDisk({ path: img, name: 'vm' });
  const base = await snapshot(f.engine, 'vm', 'base');
  const wanted = join(f.images, '..', 'base.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, wanted);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 4M');
  const other = join(f.images, 'other.qcow2');
  copyFileSync(img, other);
  return { ...f, img, disk, base, wanted, other };
}
