/**
 * What the operator is told when a job meets a damaged or missing block (docs/errors.md,
 * "Repairing a damaged block"). The store's own message names the block only; every job that
 * reads blocks (rollback, clone, stream export, a copy-on-write snapshot) adds which snapshot it
 * was reading and the one way out they share, in the same words.
 */
import { BlocksnapError, toBlocksnapError, type ErrorCode } from '../errors';
import { withWrittenDigests, writtenDigestsOf } from '../native';

const DAMAGE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['DigestMismatch', 'BlockCorrupt', 'BlockMissing']);

/** Whether `code` says a block of the store is damaged or missing. */
export function isDamageCode(code: ErrorCode): boolean {
  return DAMAGE_CODES.has(code);
}

/** How to find every snapshot a damaged block affects. */
export const VERIFY_NAMES_SHARERS = '`blocksnap store verify` names the damaged block and every snapshot that shares it';

/** How a damaged block is written again. */
export const SNAPSHOT_REWRITES = 'a snapshot of any disk whose image still holds its content writes it again, and so does importing a stream ' +
  'of that snapshot exported before the damage (the snapshot stays as it is): docs/errors.md';

/**
 * `err` with the snapshot that could not be read and the way out added to its message, when it
 * is a damaged or missing block; anything else as it was. `reading` names what the job read, as
 * "snapshot NAME (ID) of disk DISK"; `then` what to do once repaired ("clone it again").
 */
export function withDamageGuidance(err: unknown, reading: string, then: string): unknown {
  const e = toBlocksnapError(err);
  if (!isDamageCode(e.code)) return err;
  const guided = new BlocksnapError(e.code,
    `${e.message}. ${capitalised(reading)} cannot be read whole: the block is recorded for repair. ${VERIFY_NAMES_SHARERS}; ` +
    `${SNAPSHOT_REWRITES}. Then ${then}`, e.details);
  guided.stack = e.stack;
  // A failed scan's error carries the blocks it stored, which the snapshot's failure frees.
  const written = writtenDigestsOf(err);
  return written ? withWrittenDigests(guided, written) : guided;
}

function capitalised(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
