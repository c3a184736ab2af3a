/**
 * Block maps as deltas over a snapshot tree.
 *
 * A snapshot stores only the entries where its content differs from its parent's view; a root
 * snapshot stores its non-ZERO blocks. The view of snapshot S at block i is the entry of the
 * nearest ancestor-or-self that has one, looked up only below the smallest block count met on the
 * way up (a disk that shrank and grew again must not see blocks of an older, larger ancestor);
 * no entry means ZERO. So an incremental snapshot writes O(changed blocks) entries, and deleting
 * a snapshot pushes its entries down into the children that do not override them:
 * O(entries × children), never O(disk size × snapshots).
 *
 * All functions here that write must run inside Catalog.txn.
 */
import { DIGEST_SIZE } from '../store/format';
import type { Catalog } from './catalog';
import type { SnapshotRecord } from './records';

/** Raw length of block `index` of an image of `sizeBytes` (the last block may be short). */
export function blockLength(sizeBytes: number, blockSize: number, index: number): number {
  return Math.min(blockSize, sizeBytes - index * blockSize);
}

export function blockCountOf(sizeBytes: number, blockSize: number): number {
  return Math.ceil(sizeBytes / blockSize);
}

/**
 * The full view of a snapshot as packed digests (blockCount × 32 bytes, ZERO = 32 zero bytes),
 * the form the native scanner and applier take.
 */
export function readView(catalog: Catalog, snap: SnapshotRecord): Buffer {
  const n = snap.blockCount;
  const out = Buffer.alloc(n * DIGEST_SIZE);
  const filled = new Uint8Array(n);
  let limit = n;
  for (let cur: SnapshotRecord | undefined = snap; cur; cur = cur.parentId ? catalog.getSnapshot(cur.parentId) : undefined) {
    limit = Math.min(limit, cur.blockCount);
    for (const e of catalog.delta(cur.id, limit)) {
      if (filled[e.index]) continue;
      filled[e.index] = 1;
      if (e.digest) e.digest.copy(out, e.index * DIGEST_SIZE);
    }
  }
  return out;
}

function digestAt(view: Buffer, index: number): Buffer | null {
  const start = index * DIGEST_SIZE;
  const end = start + DIGEST_SIZE;
  if (end > view.length) return null;
  // Most blocks of a sparse disk are ZERO: no subarray for them (65,536 per 256 GiB map).
  for (let i = start; i < end; i++) if (view[i] !== 0) return view.subarray(start, end);
  return null;
}

/** Blocks checked for ZERO at once (one native compare): a sparse disk's map is mostly ZERO. */
const ZERO_RUN_BLOCKS = 1024;
const ZERO_RUN = Buffer.alloc(ZERO_RUN_BLOCKS * DIGEST_SIZE);

/** True when blocks [from, from + count) of `view` are all ZERO (blocks past its end count as ZERO). */
function zeroRun(view: Buffer | null, from: number, count: number): boolean {
  if (!view) return true;
  const start = Math.min(view.length, from * DIGEST_SIZE);
  const end = Math.min(view.length, (from + count) * DIGEST_SIZE);
  return view.subarray(start, end).equals(ZERO_RUN.subarray(0, end - start));
}

function sameDigest(a: Buffer | null, b: Buffer | null): boolean {
  if (a === null || b === null) return a === b;
  return a.equals(b);
}

export interface CommitStats { changedBlocks: number; newBytes: number; logicalBytes: number }

/**
 * Records a new snapshot's delta against its parent's view and takes the references. `parentView`
 * is null for a root snapshot. Returns what the snapshot changed and added to the store.
 */
export function commitDelta(catalog: Catalog, snap: SnapshotRecord, digests: Buffer, parentView: Buffer | null): CommitStats {
  let changedBlocks = 0;
  let newBytes = 0;
  let logicalBytes = 0;
  for (let i = 0; i < snap.blockCount; i++) {
    if (i % ZERO_RUN_BLOCKS === 0) {
      // ZERO in both views: nothing to record and no logical bytes, for the whole run.
      const n = Math.min(ZERO_RUN_BLOCKS, snap.blockCount - i);
      if (zeroRun(digests, i, n) && zeroRun(parentView, i, n)) {
        i += n - 1;
        continue;
      }
    }
    const d = digestAt(digests, i);
    const len = blockLength(snap.sizeBytes, snap.blockSize, i);
    if (d) logicalBytes += len;
    const p = parentView ? digestAt(parentView, i) : null;
    if (sameDigest(d, p)) continue;
    changedBlocks++;
    const copy = d ? Buffer.from(d) : null;
    catalog.putEntry(snap.id, i, copy);
    if (copy && catalog.addRef(copy, len)) newBytes += len;
  }
  return { changedBlocks, newBytes, logicalBytes };
}

/**
 * Which snapshots of one disk are whose children, read once: removing many snapshots of a disk in
 * one transaction reads the disk's snapshots once, not once per removal (O(n²) for a disk removed
 * with its snapshots, or a mass expiry). removeFromChain keeps it true as it re-parents children.
 */
export class ChainLinks {
  private readonly children = new Map<string, Set<string>>();

  constructor(snapshots: SnapshotRecord[]) {
    for (const s of snapshots) if (s.parentId) this.childSet(s.parentId).add(s.id);
  }

  static of(catalog: Catalog, diskId: string): ChainLinks {
    return new ChainLinks(catalog.snapshotsOfDisk(diskId));
  }

  /** The children of `id` as the catalog holds them now. */
  childrenOf(catalog: Catalog, id: string): SnapshotRecord[] {
    return [...(this.children.get(id) ?? [])].map((c) => catalog.getSnapshot(c)!);
  }

  /** `id` is gone, its children moved to `parentId`. */
  removed(id: string, parentId: string | null): void {
    const moved = this.children.get(id);
    this.children.delete(id);
    if (parentId) {
      const siblings = this.childSet(parentId);
      siblings.delete(id);
      for (const c of moved ?? []) siblings.add(c);
    }
  }

  private childSet(id: string): Set<string> {
    let set = this.children.get(id);
    if (!set) this.children.set(id, set = new Set());
    return set;
  }
}

/**
 * Removes a snapshot from its chain: children inherit its entries they do not override and are
 * re-parented to its parent, then its own references are dropped. Returns the digests whose last
 * reference went away (now in the free list). On a full filesystem the transaction may use the
 * room the catalog keeps for deletions (Catalog.txn): deleting snapshots is how space is freed.
 * `links`: the disk's, when the caller removes several of its snapshots.
 */
export function removeFromChain(catalog: Catalog, snap: SnapshotRecord, links = ChainLinks.of(catalog, snap.diskId)): Buffer[] {
  catalog.freesSpace();
  const children = links.childrenOf(catalog, snap.id);
  const parent = snap.parentId ? catalog.getSnapshot(snap.parentId) : undefined;
  const entries = [...catalog.delta(snap.id)];
  for (const child of children) {
    for (const e of entries) {
      if (e.index >= child.blockCount || catalog.hasEntry(child.id, e.index)) continue;
      catalog.putEntry(child.id, e.index, e.digest);
      if (e.digest) catalog.addRef(e.digest, blockLength(child.sizeBytes, child.blockSize, e.index));
    }
    if (parent) maskShrunkRange(catalog, snap, parent, child);
    catalog.putSnapshot({ ...child, parentId: snap.parentId });
  }
  const freed: Buffer[] = [];
  for (const e of entries) {
    catalog.removeEntry(snap.id, e.index);
    if (e.digest && catalog.dropRef(e.digest)) freed.push(e.digest);
  }
  catalog.deleteSnapshotRecord(snap);
  links.removed(snap.id, snap.parentId);
  return freed;
}

/**
 * When the removed snapshot was smaller than both its parent and a child, the child saw ZERO in
 * that range (the lookup stopped at the small snapshot); after re-parenting it would see the
 * parent's blocks. Explicit ZERO entries keep the child's view. Only a disk that shrank pays this.
 */
function maskShrunkRange(catalog: Catalog, removed: SnapshotRecord, parent: SnapshotRecord, child: SnapshotRecord): void {
  const end = Math.min(child.blockCount, parent.blockCount);
  if (removed.blockCount >= end) return;
  const parentView = readView(catalog, parent);
  for (let i = removed.blockCount; i < end; i++) {
    if (digestAt(parentView, i) && !catalog.hasEntry(child.id, i)) catalog.putEntry(child.id, i, null);
  }
}

/**
 * Bytes that only this snapshot references, i.e. what deleting it would free: its own entries
 * whose digest is referenced by nothing else and which no child inherits.
 */
export function uniqueBytes(catalog: Catalog, snap: SnapshotRecord, knownChildren?: SnapshotRecord[]): number {
  if (snap.status !== 'available') return 0;
  // A listing passes the children it already has: reading the disk's snapshots once per listed
  // snapshot made `snapshot list` quadratic in the chain length.
  const children = knownChildren ?? catalog.snapshotsOfDisk(snap.diskId).filter((s) => s.parentId === snap.id);
  const own = new Map<string, { count: number; inherited: boolean; bytes: number; digest: Buffer }>();
  for (const e of catalog.delta(snap.id)) {
    if (!e.digest) continue;
    const key = e.digest.toString('hex');
    const inherited = children.some((c) => e.index < c.blockCount && !catalog.hasEntry(c.id, e.index));
    const cur = own.get(key);
    const bytes = blockLength(snap.sizeBytes, snap.blockSize, e.index);
    if (cur) { cur.count++; cur.inherited ||= inherited; } else own.set(key, { count: 1, inherited, bytes, digest: e.digest });
  }
  let total = 0;
  for (const v of own.values()) {
    if (!v.inherited && catalog.refCount(v.digest) === v.count) total += v.bytes;
  }
  return total;
}

/** Distinct blocks referenced by a set of snapshots (a chain), with their total raw size. */
export function distinctBlocks(catalog: Catalog, snapshots: SnapshotRecord[]): { blocks: number; bytes: number } {
  const seen = new Set<string>();
  let bytes = 0;
  for (const s of snapshots) {
    for (const e of catalog.delta(s.id)) {
      if (!e.digest) continue;
      const key = e.digest.toString('hex');
      if (seen.has(key)) continue;
      seen.add(key);
      bytes += catalog.refBytes(e.digest);
    }
  }
  return { blocks: seen.size, bytes };
}

/** Every digest a snapshot's view references, with the snapshots asking (for verify reports). */
export function viewDigests(view: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i * DIGEST_SIZE < view.length; i++) {
    const d = digestAt(view, i);
    if (d) out.push(d);
  }
  return out;
}
