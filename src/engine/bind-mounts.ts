/**
 * Where an image file is mounted, read from the daemon's mount table (/proc/self/mountinfo). A
 * file bind mount (Firecracker's jailer, a container's volume) is another name of the file, like a
 * hard link, but one no link count shows: a qcow2 rollback, which renames a new image over the
 * disk's name, would leave it on the old image. Only the daemon's own mount namespace is seen.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { BlocksnapError } from '../errors';

export interface MountEntry {
  /** The filesystem's device, `major:minor`. */
  device: string;
  /** The mounted file or directory, as a path inside its filesystem. */
  root: string;
  mountPoint: string;
}

/** The entries of a mountinfo text (proc(5)), names unescaped. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    entries.push({ device: f[2]!, root: unescapeName(f[3]!), mountPoint: unescapeName(f[4]!) });
  }
  return entries;
}

/** The kernel writes space, tab, newline and backslash in names as octal escapes (\040 …). */
function unescapeName(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface FileMounts {
  /** Something is mounted on the path itself. */
  mountPoint: boolean;
  /** The other paths the file at the path is bind-mounted on. */
  elsewhere: string[];
}

/**
 * How the file at the real path `path` is mounted, by `entries`. A file bind mount's entry has the
 * file's path inside its filesystem as root, on the same device: that path is the one `path` has
 * below the mount that holds it (the latest mount with the longest mount point above it).
 */
export function fileMounts(path: string, entries: readonly MountEntry[]): FileMounts {
  let holder: MountEntry | null = null;
  for (const e of entries) {
    const above = e.mountPoint === '/' || path.startsWith(`${e.mountPoint}/`);
    if (above && (holder === null || e.mountPoint.length >= holder.mountPoint.length)) holder = e;
  }
  const mountPoint = entries.some((e) => e.mountPoint === path);
  const h = holder;
  if (h === null) return { mountPoint, elsewhere: [] };
  const below = relative(h.mountPoint, path);
  const root = h.root === '/' ? `/${below}` : `${h.root}/${below}`;
  const elsewhere = entries.filter((e) => e.device === h.device && e.root === root && e.mountPoint !== path).map((e) => e.mountPoint);
  return { mountPoint, elsewhere: [...new Set(elsewhere)] };
}

/**
 * Refuses (ImageBindMounted) a qcow2 rollback of the image at the real path `path` when the file
 * is mounted: a mount point cannot be renamed over (the rename fails EBUSY, but only once the whole
 * new image is written), and a bind mount elsewhere keeps the old file, so a VM opening the image
 * there would not be rolled back at all, without a word.
 */
export function checkNotBindMounted(path: string): void {
  const m = fileMounts(path, parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')));
  if (m.mountPoint) {
    throw new BlocksnapError('ImageBindMounted',
      `${path} is a mount point (a file is bind-mounted over it), and a qcow2 rollback renames a new image over it, which the kernel refuses (EBUSY); ` +
      'with the VM stopped, unmount it (umount), roll back the mounted file by its own path and mount it again, or clone the snapshot to a new image instead',
      { path, mountPoint: true });
  }
  if (m.elsewhere.length > 0) {
    throw new BlocksnapError('ImageBindMounted',
      `${path} is bind-mounted on ${m.elsewhere.join(', ')}, and a qcow2 rollback replaces only this name: the mount would keep the content ` +
      'from before the rollback, and a VM opening the image there would not be rolled back; with the VM stopped, unmount it (umount), ' +
      'roll back and mount it again, or clone the snapshot to a new image instead', { path, mountedOn: m.elsewhere });
  }
}
