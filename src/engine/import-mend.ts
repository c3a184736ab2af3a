/**
 * Mending a snapshot from a stream of itself. A stream's snapshot keeps its id on every host, and
 * its map is its whole view, so a stream whose id is here already, whose map is the local
 * snapshot's view, holds the very content of that snapshot. Importing it then commits nothing:
 * every block of the view that the store has lost or holds damaged, and that the stream carries,
 * is written again from the stream (checked against its digest; temp file, fsync, rename, as every
 * block is written). This is the way out of a damaged snapshot that keeps it in place: deleting it
 * to import the stream again would free blocks other snapshots may need, and lose its place in
 * its disk's chain.
 *
 * A stream under the same id with another map is another snapshot's content: SnapshotExists, as
 * before. Only the snapshot's own disk mends it (`--disk`): the import holds that disk's lock, which
 * every deletion of the snapshot needs, so the blocks it writes stay referenced throughout.
 */
import { BlocksnapError } from '../errors';
import { readView } from '../catalog/block-map';
import type { SnapshotRecord } from '../catalog/records';
import type { VerifyProblem } from '../native';
import { CODE_OF } from './block-repair';
import type { ImportedSnapshot } from './import-commit';
import type { OffsiteInternals } from './offsite-internals';

/**
 * The local snapshot a stream of `s` would mend, or undefined when its id is new here. Refuses
 * (SnapshotExists) an id that is here for another snapshot, as far as the header tells; the map
 * is compared once read (checkSameMap).
 */
export function snapshotToMend(x: OffsiteInternals, s: ImportedSnapshot, diskId: string): SnapshotRecord | undefined {
  const here = x.catalog.getSnapshot(s.id);
  if (!here) return undefined;
  const exists = (why: string): BlocksnapError => new BlocksnapError('SnapshotExists', `snapshot ${s.id} is already in this catalog ${why}`, { snapshotId: s.id });
  if (here.status !== 'available') throw exists(`(${here.status}): a stream mends only an available snapshot`);
  if (here.sizeBytes !== s.sizeBytes || here.blockSize !== s.blockSize || here.blockCount !== s.blockCount) {
    throw exists(`with another size than the stream's (${here.sizeBytes} bytes in ${here.blockCount} blocks of ${here.blockSize}, ` +
      `the stream's ${s.sizeBytes} in ${s.blockCount} of ${s.blockSize}): the stream holds other content under the same id and neither mends nor replaces it`);
  }
  if (here.diskId !== diskId) {
    const name = x.catalog.getDisk(here.diskId)?.name ?? here.diskId;
    throw exists(`as a snapshot of disk ${name}: a stream of it mends it only when imported with --disk ${name}`);
  }
  return here;
}

/** Refuses (SnapshotExists) a stream whose map is not the view of the snapshot it would mend. */
export function checkSameMap(x: OffsiteInternals, here: SnapshotRecord, map: Buffer): void {
  if (readView(x.catalog, here).equals(map)) return;
  throw new BlocksnapError('SnapshotExists',
    `snapshot ${here.id} is already in this catalog with another block map than the stream's: the stream holds other content under the same id, ` +
    'so it neither mends nor replaces the local snapshot', { snapshotId: here.id });
}

/**
 * After a mend, for the damaged blocks (`left`) the stream did not carry (an incremental stream
 * leaves out what its base has): they are recorded for repair, and the mend fails with the first
 * one's error, saying how many it did write again (those stay written).
 */
export function unmended(x: OffsiteInternals, snapshotId: string, left: VerifyProblem[], repairedBlocks: number): BlocksnapError {
  x.repair.reportProblems(left);
  const p = left[0]!;
  const more = left.length > 1 ? ` (and ${left.length - 1} more damaged or missing block${left.length > 2 ? 's' : ''})` : '';
  return new BlocksnapError(CODE_OF[p.reason],
    `block ${p.digest} of snapshot ${snapshotId} is ${p.reason === 'missing' ? 'missing from' : 'damaged in'} the store (${p.message})${more}, ` +
    `and the stream did not carry it (its base has it): ${repairedBlocks} block${repairedBlocks === 1 ? ' was' : 's were'} written again from the stream; ` +
    'import a full stream of the snapshot to mend the rest',
    { digest: p.digest, damagedBlocks: left.map((q) => q.digest), repairedBlocks });
}
