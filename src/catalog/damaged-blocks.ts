/**
 * Stored blocks known to be damaged (database `damaged`, schema.ts): a block file whose payload or
 * header was found wrong, or that is missing, by `store verify` or by a reader (DigestMismatch,
 * BlockCorrupt, BlockMissing). A damaged file has the right size, so a scan would take it for
 * present and reuse it; a scan does not look up a block equal to the parent's at all, so it would
 * reference a missing one as it is. The digests listed
 * here are instead written again by the next snapshot or import that produces the block from good
 * bytes (native BlockWriter::set_damaged, store/block-io.ts writeBlock `repair`), and the commit
 * of that snapshot removes them. A digest also leaves the list when `store verify` finds its file
 * intact (a mark older than the verify run) and when the sweep or gc unlinks its file. The list
 * is small (what is damaged), so every scan reads all of it. Writes run inside Catalog.txn.
 */
import type { Database } from 'lmdb';
import type { Catalog } from './catalog';
import { DAMAGED_DB } from './schema';
import { DIGEST_SIZE } from '../store/format';

/**
 * `missing` came later than the others: a version that does not know it still rewrites the block
 * (it uses only the key), so the table needs no new schema version.
 */
export type DamageReason = 'digest-mismatch' | 'corrupt-header' | 'missing';

export interface DamagedBlockRecord {
  reason: DamageReason;
  /** What found it: `verify`, or the reader (`read`: rollback, clone, export, a volume, replication). */
  foundBy: string;
  /** When it was last found damaged (unix ms). */
  at: number;
}

export class DamagedBlocks {
  private readonly db: Database<DamagedBlockRecord, Buffer>;

  constructor(catalog: Catalog) {
    this.db = catalog.database<DamagedBlockRecord, Buffer>(DAMAGED_DB, { keyEncoding: 'binary' });
  }

  /** Records (or records again, with a new time) that the block `digest` was found damaged. In a txn. */
  mark(digest: Buffer, reason: DamageReason, foundBy: string, at = Date.now()): void {
    this.db.putSync(Buffer.from(digest), { reason, foundBy, at });
  }

  /** Forgets `digest` (its file was rewritten, found intact, or unlinked). In a txn; true when it was listed. */
  clear(digest: Buffer): boolean {
    if (!this.db.doesExist(digest)) return false;
    this.db.removeSync(digest);
    return true;
  }

  get(digest: Buffer): DamagedBlockRecord | undefined {
    return this.db.get(digest);
  }

  has(digest: Buffer): boolean {
    return this.db.doesExist(digest);
  }

  count(): number {
    return this.db.getCount();
  }

  all(): Array<{ digest: Buffer; record: DamagedBlockRecord }> {
    return [...this.db.getRange()].map(({ key, value }) => ({ digest: Buffer.from(key), record: value }));
  }

  /** Every listed digest, packed (n × 32) for a scan; undefined when none is listed. */
  packed(): Buffer | undefined {
    const keys = [...this.db.getKeys()].map((k) => Buffer.from(k));
    return keys.length === 0 ? undefined : Buffer.concat(keys);
  }

  /**
   * The listed digests that `view` (n × 32, a snapshot's digests) holds, except those in
   * `except` (hex). A few searches of the view for the few listed digests, none when none is listed.
   */
  inView(view: Buffer, except: ReadonlySet<string> = new Set()): Buffer[] {
    const out: Buffer[] = [];
    for (const key of this.db.getKeys()) {
      const d = Buffer.from(key);
      if (except.has(d.toString('hex'))) continue;
      if (viewHolds(view, d)) out.push(d);
    }
    return out;
  }
}

/** Whether `view` (n × 32) holds `digest` at a 32-byte boundary. */
export function viewHolds(view: Buffer, digest: Buffer): boolean {
  for (let at = view.indexOf(digest); at >= 0; at = view.indexOf(digest, at + 1)) {
    if (at % DIGEST_SIZE === 0) return true;
  }
  return false;
}

/** A packed digest list (n × 32) as hex strings. */
export function hexDigests(packed: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at + DIGEST_SIZE <= packed.length; at += DIGEST_SIZE) out.push(packed.toString('hex', at, at + DIGEST_SIZE));
  return out;
}
