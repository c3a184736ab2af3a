import type { Catalog } from '../catalog/catalog';
import type { SnapshotRecord } from '../catalog/records';
import { ChainLinks, removeFromChain } from '../catalog/block-map';

/**
 * Removes one snapshot inside a catalog transaction: its chain delta moves into its children and
 * the disk's head steps back to the parent when it was the head. Returns the digests that lost
 * their last reference (now on the free list, for the sweeper). The caller holds the disk lock.
 * `links`: the disk's, when the caller removes several of its snapshots (removeFromChain).
 */
export function removeSnapshot(catalog: Catalog, snap: SnapshotRecord, links = ChainLinks.of(catalog, snap.diskId)): Buffer[] {
  const freed = removeFromChain(catalog, snap, links);
  const d = catalog.getDisk(snap.diskId);
  if (d && d.headSnapshotId === snap.id) catalog.putDisk({ ...d, headSnapshotId: snap.parentId });
  return freed;
}
