/**
 * A small, separately mounted filesystem for disk-full tests: a loop-mounted ext4 image (what a
 * real data dir sits on), or a size-limited tmpfs where loop devices are unavailable. Needs root;
 * returns null with the reason when the machine does not allow mounting, so the test can skip
 * saying why instead of passing vacuously.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

export interface SmallFs {
  /** The mount point. */
  dir: string;
  kind: 'ext4-loop' | 'tmpfs';
}

function run(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? null : `${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
}

export function mountSmallFs(t: Test, parent: string, mib: number): SmallFs | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'mounting a small filesystem needs root' };
  const dir = join(parent, 'smallfs');
  mkdirSync(dir, { recursive: true });
  const image = join(parent, 'smallfs.img');
  let kind: SmallFs['kind'] = 'ext4-loop';
  let why = run('truncate', ['-s', `${mib}M`, image]) ?? run('mkfs.ext4', ['-q', '-F', '-m', '0', image]) ?? run('mount', ['-o', 'loop', image, dir]);
  if (why !== null) {
    kind = 'tmpfs';
    const tmpfsWhy = run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir]);
    if (tmpfsWhy !== null) return { skip: `cannot mount a small filesystem (${why}; ${tmpfsWhy})` };
  }
  t.teardown(() => {
    run('umount', ['-l', dir]);
    rmSync(image, { force: true });
  });
  return { dir, kind };
}

/**
 * A small filesystem under a fresh temp dir, or null after recording why the test cannot run
 * here (skipped, not passed vacuously). Returns the temp dir too: what the test keeps off the
 * small filesystem goes there.
 */
export function smallFsOrSkip(t: Test, prefix: string, mib: number): { fs: SmallFs; tempDir: string } | null {
  const tempDir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(tempDir, { recursive: true, force: true }));
  const fs = mountSmallFs(t, tempDir, mib);
  if ('skip' in fs) {
    t.comment(`skipped: ${fs.skip}`);
    t.pass('nothing to check without a small filesystem', { skip: fs.skip });
    return null;
  }
  return { fs, tempDir };
}

/**
 * A filesystem mounted under a fresh temp dir, or null after recording why the test cannot run
 * here: `no-punch`, bindfs (FUSE) over a dir beside it, which cannot punch holes (nor can ext2 on
 * kernels that mount it with the ext2 driver); `unaccounted`, ramfs (tmpfs with size=0 where
 * ramfs is missing), whose statfs reports 0 blocks in all, as many FUSE filesystems do.
 */
export function mountedOrSkip(t: Test, prefix: string, kind: 'no-punch' | 'unaccounted'): { dir: string; tempDir: string } | null {
  const tempDir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(tempDir, { recursive: true, force: true }));
  const dir = join(tempDir, kind);
  mkdirSync(dir);
  let why: string | null;
  if (process.getuid?.() !== 0) {
    why = 'mounting a filesystem needs root';
  } else if (kind === 'no-punch') {
    const under = join(tempDir, 'under');
    mkdirSync(under);
    why = run('bindfs', [under, dir]);
  } else {
    why = run('mount', ['-t', 'ramfs', '-o', 'mode=0700', 'ramfs', dir]) && run('mount', ['-t', 'tmpfs', '-o', 'size=0,mode=0700', 'tmpfs', dir]);
  }
  if (why !== null) {
    t.comment(`skipped: ${why}`);
    t.pass(`nothing to check without a ${kind} filesystem`, { skip: why });
    return null;
  }
  t.teardown(() => run('umount', ['-l', dir]));
  return { dir, tempDir };
}

/** Fills the filesystem of `dir` with a file `ballast` until at most `leave` bytes are free; returns its path. */
export function ballast(dir: string, leave: number): string {
  const path = join(dir, 'ballast');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1024 * 1024, 0xab);
  try {
    for (;;) {
      const s = statfsSync(dir);
      const free = s.bavail * s.bsize;
      if (free <= leave) break;
      try {
        writeSync(fd, chunk, 0, Math.min(chunk.length, free - leave));
      } catch {
        break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}
