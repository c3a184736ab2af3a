/**
 * Which of many blocks a remote already has, in fewer requests than one HEAD each. A listing of
 * `blocks/` comes back in key order, up to 1000 keys a page, and a block key sorts by its digest,
 * so one page settles every wanted digest up to the last key it shows: an empty or small remote
 * answers a whole first replication in a single request. After each page the listing jumps
 * (StartAfter) to just before the next wanted key, skipping ranges that hold nothing in question.
 *
 * A page costs more than a HEAD (up to 1000 entries of XML to parse), and on a remote holding
 * many other blocks a page may settle a single wanted digest; so the listing stops after one page
 * per PAGE_PER_BLOCKS wanted blocks, and what it did not reach is left `unknown`, for the caller
 * to HEAD. Below LIST_MIN_BLOCKS blocks in question, HEADs in parallel are the cheaper answer.
 *
 * The caller must hold its writer lease, as for any HEAD (docs/design.md "Remote gc"): a block
 * seen present stays there until a manifest names it.
 */
import { blockKey, join, BLOCKS } from './layout';
import type { ObjectStore } from './object-store';

/** From this many blocks in question on, a listing replaces the HEADs. */
export const LIST_MIN_BLOCKS = 32;
/** The listing may read one page per this many wanted blocks before HEADs take over. */
export const PAGE_PER_BLOCKS = 16;

export interface BlockPresence {
  present: Set<string>;
  absent: Set<string>;
  /** Digests the listing did not reach: HEAD them. */
  unknown: Set<string>;
}

export async function listBlockPresence(store: ObjectStore, prefix: string, digests: Iterable<string>, signal?: AbortSignal): Promise<BlockPresence> {
  const wanted = [...new Set(digests)].sort(); // block keys sort as their digests do
  const out: BlockPresence = { present: new Set(), absent: new Set(), unknown: new Set() };
  const dir = `${join(prefix, BLOCKS)}/`;
  const budget = Math.max(1, Math.floor(wanted.length / PAGE_PER_BLOCKS));
  let i = 0;
  for (let pages = 0; i < wanted.length && pages < budget; pages++) {
    const next = blockKey(prefix, wanted[i]!);
    // A proper prefix of the next wanted key sorts right before it: the page starts at that key.
    const { objects, more } = await store.listPage(dir, next.slice(0, -1), signal);
    const seen = new Set(objects.map((o) => o.key));
    const last = objects.at(-1)?.key;
    if (more && last === undefined) break; // nothing to go on: leave the rest to HEADs
    for (; i < wanted.length; i++) {
      const key = blockKey(prefix, wanted[i]!);
      if (more && key > last!) break;
      (seen.has(key) ? out.present : out.absent).add(wanted[i]!);
    }
  }
  for (; i < wanted.length; i++) out.unknown.add(wanted[i]!);
  return out;
}
