import { randomBytes } from 'node:crypto';

/** d disk, s snapshot, j job, p policy, g group, l copy-on-write layer. */
export type IdPrefix = 'd' | 's' | 'j' | 'p' | 'g' | 'l';

/** Ids are prefix + 16 hex chars of randomness: unique without a counter in the catalog. */
export function newId(prefix: IdPrefix): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

export function looksLikeId(prefix: IdPrefix, ref: string): boolean {
  return ref.length === 18 && ref.startsWith(`${prefix}-`) && /^[0-9a-f]{16}$/.test(ref.slice(2));
}
