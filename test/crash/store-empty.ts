/**
 * The end of a crash run: delete everything the run made (the copy-on-write disk, the groups,
 * every snapshot), gc, and hold the store to empty. Whatever the kills left behind (a block no
 * snapshot took, a granule file, a temp file, a copy-on-write layer) must be reclaimed by then.
 */
import type { DaemonClient } from '../../src/daemon/client';
import type { Group } from '../../src/engine/groups';
import type { Disk, Job, Snapshot, StoreStats } from '../../src/engine/types';
import { storeFiles } from './store-files';

/** Deletes everything and returns what is left that should not be (empty when the store is empty). */
export async function leftAfterDeletingAll(c: DaemonClient, dataDir: string): Promise<string[]> {
  for (const d of await c.call<Disk[]>('disk.list')) if (d.cow !== null) await c.call('disk.remove', { disk: d.id, discardWrites: true });
  for (const g of await c.call<Group[]>('group.list')) await c.call('group.delete', { group: g.id });
  for (const s of await c.call<Snapshot[]>('snapshot.list')) await c.call('snapshot.delete', { snapshot: s.id });
  const gc = await c.call<Job>('store.gc', { wait: true });
  const left: string[] = [];
  if (gc.state !== 'succeeded') left.push(`store gc ended ${gc.state}: ${JSON.stringify(gc.error)}`);
  const stats = await c.call<StoreStats>('store.stats');
  if (stats.blocks !== 0 || stats.bytes !== 0 || stats.pendingFreeBlocks !== 0) left.push(`store stats ${JSON.stringify(stats)}`);
  const files = storeFiles(dataDir);
  if (files.blocks.size > 0) left.push(`${files.blocks.size} block files`);
  if (files.granules.size > 0) left.push(`${files.granules.size} granule files`);
  if (files.temp.length > 0) left.push(`temp files ${files.temp.join(', ')}`);
  if (files.cow.length > 0) left.push(`copy-on-write files ${files.cow.join(', ')}`);
  return left;
}
