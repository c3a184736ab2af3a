/**
 * Whether an image changed between two instants, from its inode: size, mtime and ctime in
 * nanoseconds. A snapshot whose image changed while it was scanned holds blocks from different
 * moments (each block is still read, hashed and stored from one buffer, so each is whole), which
 * makes it crash-consistent even when no QEMU lock says a VM holds the image. The kernel stamps
 * mtime from a coarse clock, so a write in the very tick of the first stamp can go unseen; a
 * writer that keeps writing cannot.
 */
import { statSync } from 'node:fs';

export interface ImageStamp { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }

export function stampImage(path: string): ImageStamp {
  const st = statSync(path, { bigint: true });
  return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/** True when the image at `path` no longer carries `before`'s stamp (or cannot be read). */
export function changedSince(path: string, before: ImageStamp): boolean {
  let now: ImageStamp;
  try {
    now = stampImage(path);
  } catch {
    return true;
  }
  return now.ino !== before.ino || now.size !== before.size || now.mtimeNs !== before.mtimeNs || now.ctimeNs !== before.ctimeNs;
}
