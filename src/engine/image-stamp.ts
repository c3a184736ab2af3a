/**
 * Whether image files changed between two instants, from their inodes: size, mtime and ctime in
 * nanoseconds. A snapshot whose image, or a backing file of it, changed while it was scanned holds
 * blocks from different moments (each block is still read, hashed and stored from one buffer, so
 * each is whole), which makes it crash-consistent even when no QEMU lock says a VM holds the
 * files. The kernel stamps mtime from a coarse clock, so a write in the very tick of the first
 * stamp can go unseen; a writer that keeps writing cannot.
 */
import { statSync } from 'node:fs';

export interface ImageStamp { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }

export function stampImage(path: string): ImageStamp {
  const st = statSync(path, { bigint: true });
  return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/** The stamps of `files`, in their order. */
export function stampImages(files: readonly string[]): ImageStamp[] {
  return files.map(stampImage);
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

/** True when any of `files` no longer carries its stamp in `before` (stampImages of the same files). */
export function anyChangedSince(files: readonly string[], before: readonly ImageStamp[]): boolean {
  return files.some((f, i) => changedSince(f, before[i]!));
}
