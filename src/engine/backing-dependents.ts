/**
 * Which registered disks read an image as a backing file: a golden image under linked clones
 * (qcow2 overlays made with `qemu-img create -b`), raw or qcow2. Rolling the image back changes
 * what their guests see as surely as rolling them back would, so it is refused unless forced.
 */
import { BlocksnapError } from '../errors';
import type { Catalog } from '../catalog/catalog';
import type { DiskRecord } from '../catalog/records';
import { fileIdentity, inspectImage } from './image-access';

/**
 * The qcow2 disks other than `disk` whose backing chain, as a snapshot of them would read it, holds
 * the file at `path`. A disk whose chain cannot be read now (its image gone, a backing file outside
 * the roots) counts as none: no guest reads through it as registered.
 */
export function backingDependents(catalog: Catalog, disk: DiskRecord, path: string, roots: string[]): DiskRecord[] {
  const target = fileIdentity(path);
  if (target === null) return [];
  return catalog.allDisks().filter((d) => {
    if (d.id === disk.id || d.cow !== null || d.format !== 'qcow2') return false;
    let chain;
    try {
      chain = inspectImage(d.path, 'qcow2', roots).backingChain;
    } catch {
      return false;
    }
    return chain.some((b) => {
      const id = fileIdentity(b.realPath);
      return id !== null && id.dev === target.dev && id.ino === target.ino;
    });
  });
}

/**
 * Refuses (ImageIsBackingFile) a rollback of `disk`'s image at `path` while other registered disks
 * are overlays over it, naming them. `force` turns the refusal into a returned description for the
 * log; null when no disk depends on it.
 */
export function checkNotBacking(catalog: Catalog, disk: DiskRecord, path: string, roots: string[], force: boolean): string | null {
  const names = backingDependents(catalog, disk, path, roots).map((d) => d.name).sort();
  if (names.length === 0) return null;
  const what = `${path} is the backing file of disk${names.length > 1 ? 's' : ''} ${names.join(', ')}`;
  if (!force) {
    throw new BlocksnapError('ImageIsBackingFile',
      `${what}: rolling it back changes what their guests see, under data they wrote on top of it; ` +
      'roll back those disks instead, or pass --force to roll it back anyway', { path, diskId: disk.id, dependents: names });
  }
  return what;
}
