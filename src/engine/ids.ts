import { randomBytes } from 'node:crypto';
import { BlocksnapError, type ErrorCode } from '../errors';

/** d disk, s snapshot, j job, p policy, g group, l copy-on-write layer. */
export type IdPrefix = 'd' | 's' | 'j' | 'p' | 'g' | 'l';

/** Ids are prefix + 16 hex chars of randomness: unique without a counter in the catalog. */
export function newId(prefix: IdPrefix): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

/**
 * Up to `max` items, and how many more: a message names a few of many (a policy over 2,000 disks
 * gives 2,000 snapshots one name) rather than growing with the catalog.
 */
export function someOf(items: string[], max = 5): string {
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

export function looksLikeId(prefix: IdPrefix, ref: string): boolean {
  return ref.length === 18 && ref.startsWith(`${prefix}-`) && /^[0-9a-f]{16}$/.test(ref.slice(2));
}

/**
 * A record of a kind whose names are unique (disk, group, policy) by its id or its name. An id is
 * tried first: a name that looks like another record's id still resolves when no such id exists.
 */
export function resolveIdOrName<T extends { name: string }>(
  ref: unknown, kind: { prefix: IdPrefix; noun: string; notFound: ErrorCode },
  byId: (id: string) => T | undefined, all: () => T[],
): T {
  if (typeof ref !== 'string' || ref.length === 0) throw new BlocksnapError('InvalidArgument', `a ${kind.noun} id or name is required`);
  if (looksLikeId(kind.prefix, ref)) {
    const r = byId(ref);
    if (r) return r;
  }
  const byName = all().filter((r) => r.name === ref);
  if (byName.length === 1) return byName[0]!;
  throw new BlocksnapError(kind.notFound, `no ${kind.noun} ${JSON.stringify(ref)}`);
}
