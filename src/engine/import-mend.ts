/**
 * Mending a snapshot from a copy of itself: a stream of it, or its manifest on a remote. A
 * snapshot keeps its id on every host, and its map is its whole view, so a copy whose id is here
 * already, whose map is the local snapshot's view, holds the very content of that snapshot.
 * Importing it then commits nothing: every block of the view that the store has lost or holds
 * damaged, and that the copy carries (a remote holds them all), is written again from it (checked
 * against its digest; temp file, fsync, rename, as every block is written). This is the way out of
 * a damaged snapshot that keeps it in place: deleting it to import it again would free blocks other
 * snapshots may need, and lose its place in its disk's chain.
 *
 * A copy under the same id with another map is another snapshot's content: SnapshotExists, as
 * before. Only the snapshot's own disk mends it (`--disk`): the import holds that disk's lock, which
 * every deletion of the snapshot needs, so the blocks it writes stay referenced throughout.
 */
import { BlocksnapError } from '../errors';
import { readView } from '../catalog/block-map';
import type { SnapshotRecord } from '../catalog/records';
import type { VerifyProblem } from '../native';
import { CODE_OF } from './block-repair';
import type { ImportedSnapshot } from './import-commit';
import type { ImportResult } from './offsite-types';
import type { OffsiteInternals } from './offsite-internals';

/** What the refusals call the copy: "a stream" and "the stream", or a remote's. */
export interface MendSource {
  a: string;
  the: string;
}
export const STREAM: MendSource = { a: 'a stream', the: 'the stream' };
export const REMOTE_COPY: MendSource = { a: 'a remote copy', the: 'the remote copy' };

/**
 * The local snapshot a copy (`src`) of `s` would mend, or undefined when its id is new here.
 * Refuses (SnapshotExists) an id that is here for another snapshot, as far as the header tells;
 * the map is compared once read (checkSameMap).
 */
export function snapshotToMend(x: OffsiteInternals, s: ImportedSnapshot, diskId: string, src: MendSource): SnapshotRecord | undefined {
  const here = x.catalog.getSnapshot(s.id);
  if (!here) return undefined;
  const exists = (why: string): BlocksnapError => new BlocksnapError('SnapshotExists', `snapshot ${s.id} is already in this catalog ${why}`, { snapshotId: s.id });
  if (here.status !== 'available') throw exists(`(${here.status}): ${src.a} mends only an available snapshot`);
  if (here.sizeBytes !== s.sizeBytes || here.blockSize !== s.blockSize || here.blockCount !== s.blockCount) {
    throw exists(`with another size than ${src.the}'s (${here.sizeBytes} bytes in ${here.blockCount} blocks of ${here.blockSize}, ` +
      `${src.the}'s ${s.sizeBytes} in ${s.blockCount} of ${s.blockSize}): ${src.the} holds other content under the same id and neither mends nor replaces it`);
  }
  if (here.diskId !== diskId) {
    const name = x.catalog.getDisk(here.diskId)?.name ?? here.diskId;
    throw exists(`as a snapshot of disk ${name}: ${src.a} of it mends it only when imported with --disk ${name}`);
  }
  return here;
}

/** Refuses (SnapshotExists) a copy whose map is not the view of the snapshot it would mend. */
export function checkSameMap(x: OffsiteInternals, here: SnapshotRecord, map: Buffer, src: MendSource): void {
  if (readView(x.catalog, here).equals(map)) return;
  throw new BlocksnapError('SnapshotExists',
    `snapshot ${here.id} is already in this catalog with another block map than ${src.the}'s: ${src.the} holds other content under the same id, ` +
    'so it neither mends nor replaces the local snapshot', { snapshotId: here.id });
}

/**
 * The snapshot's blocks (`digests`, its distinct non-ZERO ones, by hex) that are missing here or
 * fail their digest, read whole as `store verify` reads them, by hex. The caller holds the shared
 * store lock from before this check until the blocks are written again, so no gc unlinks or
 * sweeps anything in between.
 */
export async function damageOf(x: OffsiteInternals, digests: Iterable<string>, signal: AbortSignal): Promise<Map<string, VerifyProblem>> {
  const packed = Buffer.concat([...digests].map((hex) => Buffer.from(hex, 'hex')));
  return new Map((await x.repair.check(packed, signal)).map((p) => [p.digest, p]));
}

/**
 * After the blocks `repaired` (hex) of the local snapshot `here` were written again by job
 * `jobId` from `from` (for the log): their repair marks go, and `res` names the local snapshot.
 */
export function settleMend(x: OffsiteInternals, here: SnapshotRecord, sourceName: string, res: ImportResult, repaired: string[], from: string, jobId: string): void {
  x.repair.forgetRepaired(repaired, from, jobId);
  res.parentId = here.parentId;
  res.name = here.name;
  res.renamedFrom = here.name === sourceName ? null : sourceName;
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
