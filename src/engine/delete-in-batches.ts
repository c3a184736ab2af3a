/**
 * Deleting many snapshots of one disk at once, as a policy run's retention does after its rules
 * were tightened or the daemon was stopped for long: hundreds of snapshots. Every catalog
 * transaction syncs to disk on the event loop, so one per snapshot held every client and NBD
 * export for about 12 ms a snapshot, seconds in all. Here they go in batches of one transaction
 * each, and the event loop serves between batches. A crash keeps the batches committed and leaves
 * the rest whole; each snapshot is checked, under the disk lock, just before its batch commits.
 */
import { setImmediate as eventLoopTurn } from 'node:timers/promises';
import { ChainLinks } from '../catalog/block-map';
import type { SnapshotRecord } from '../catalog/records';
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { EngineInternals } from './internals';
import { removeSnapshot } from './remove-snapshot';

export interface DeleteBatch {
  /** Snapshots per transaction. */
  snapshots: number;
  /**
   * Block-map entries per transaction, summed over the batch's deltas (a delete moves each into
   * the snapshot's children): a batch of large snapshots stops early. One snapshot always goes.
   */
  entries: number;
}

export const DELETE_BATCH: DeleteBatch = { snapshots: 64, entries: 65_536 };

export interface BatchDeletes {
  deleted: string[];
  /** Those left, and why: refused now (SnapshotBusy, DiskBusy, …) or the engine closing. */
  refused: Array<{ id: string; error: BlocksnapError }>;
}

/** Deletes the snapshots `ids` of disk `diskId`, in order, as deleteSnapshot would one by one. */
export async function deleteInBatches(i: EngineInternals, diskId: string, ids: string[]): Promise<BatchDeletes> {
  const out: BatchDeletes = { deleted: [], refused: [] };
  let next = 0;
  while (next < ids.length) {
    if (next > 0) await eventLoopTurn();
    if (i.shuttingDown()) {
      refuseRest(out, ids, next, new BlocksnapError('ShuttingDown', 'the engine is shutting down'));
      break;
    }
    next = deleteBatch(i, diskId, ids, next, out);
  }
  return out;
}

/** Deletes the batch that starts at ids[from]; returns where the next one starts. */
function deleteBatch(i: EngineInternals, diskId: string, ids: string[], from: number, out: BatchDeletes): number {
  let release: () => void;
  try {
    release = i.diskLocks.acquire(diskId, `delete:${diskId}`);
  } catch (err) {
    return refuseRest(out, ids, from, toBlocksnapError(err));
  }
  try {
    const limit = i.deleteBatch();
    const batch: SnapshotRecord[] = [];
    let entries = 0;
    let k = from;
    for (; k < ids.length && batch.length < limit.snapshots && entries < limit.entries; k++) {
      const s = i.catalog.getSnapshot(ids[k]!);
      if (!s || s.diskId !== diskId) {
        out.refused.push({ id: ids[k]!, error: new BlocksnapError('SnapshotNotFound', `no snapshot ${ids[k]!} of disk ${diskId}`) });
        continue;
      }
      try {
        i.refuseDelete(s);
      } catch (err) {
        out.refused.push({ id: s.id, error: toBlocksnapError(err) });
        continue;
      }
      entries += i.catalog.deltaSize(s.id);
      batch.push(s);
    }
    if (batch.length === 0) return k;
    let freed: number;
    try {
      freed = i.catalog.txn(() => {
        const links = ChainLinks.of(i.catalog, diskId);
        // Re-read each: removing one re-parents its children.
        return batch.reduce((n, s) => n + removeSnapshot(i.catalog, i.catalog.getSnapshot(s.id)!, links).length, 0);
      });
    } catch (err) {
      // Nothing of the batch was committed (NoSpace, IOError): the rest would fail alike.
      for (const s of batch) out.refused.push({ id: s.id, error: toBlocksnapError(err) });
      return refuseRest(out, ids, k, toBlocksnapError(err));
    }
    for (const s of batch) out.deleted.push(s.id);
    i.log.info({ diskId, snapshotIds: batch.map((s) => s.id), freedBlocks: freed }, 'snapshots deleted');
    i.afterDelete();
    return k;
  } finally {
    release();
  }
}

function refuseRest(out: BatchDeletes, ids: string[], from: number, error: BlocksnapError): number {
  for (const id of ids.slice(from)) out.refused.push({ id, error });
  return ids.length;
}
