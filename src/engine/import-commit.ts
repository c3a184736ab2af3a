/**
 * Committing a snapshot that arrived from elsewhere (a remote manifest or a stream) into the local
 * catalog, with the identity it had at its source: same id, same digests, so that a later
 * incremental (a stream `--from` it, a replication whose parent it is) finds it by id here too.
 *
 * The caller holds the disk lock and the store lock shared, and has made every block the map names
 * durable in the store first (invariant 1). The snapshot joins the disk's chain as a child of its
 * source parent when that snapshot is here on the same disk (its delta is then small), else as a
 * new root of the disk's tree. The disk's head does not move: an import changes no image.
 */
import { BlocksnapError } from '../errors';
import { commitDelta, readView } from '../catalog/block-map';
import type { DiskRecord, SnapshotRecord } from '../catalog/records';
import { syncStoreEntries, type FoundBlock } from '../store/block-io';
import { reportStoreDamage } from '../store/damage-reports';
import { BLOCK_HEADER_SIZE, DIGEST_SIZE } from '../store/format';
import { SNAPSHOT_REWRITES, VERIFY_NAMES_SHARERS } from './damage-guidance';
import { looksLikeId } from './ids';
import type { JobControl } from './jobs';
import { uniqueName, validateName } from './names';
import type { OffsiteInternals } from './offsite-internals';
import { quotaCounted } from './quotas';
import type { SnapshotConsistency, SnapshotType } from './types';

export interface ImportedSnapshot {
  id: string;
  name: string;
  description: string;
  type: SnapshotType;
  parentId: string | null;
  createdAt: string;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  consistency?: SnapshotConsistency | null;
}

/**
 * Checks that an incoming snapshot can be committed under `disk` at all, before any block is
 * fetched (and again in the commit transaction). An import counts against the disk's quota for
 * its type like a snapshot taken here; being no policy run, it never deletes a local snapshot to
 * make room, whatever its type: over quota it is refused.
 */
export function checkImportable(x: OffsiteInternals, s: ImportedSnapshot, disk: DiskRecord): void {
  if (!looksLikeId('s', s.id)) throw new BlocksnapError('InvalidArgument', `incoming snapshot id ${JSON.stringify(s.id)} is not a snapshot id`);
  if (x.catalog.getSnapshot(s.id)) throw new BlocksnapError('SnapshotExists', `snapshot ${s.id} is already in this catalog`, { snapshotId: s.id });
  if (s.blockSize !== x.catalog.blockSize) {
    // Not a usage error: no command line imports it here. A store keeps the block size it was
    // created with, and digests of blocks of another size name nothing this store could hold.
    throw new BlocksnapError('BlockSizeMismatch',
      `snapshot ${s.id} has ${s.blockSize}-byte blocks; this store uses ${x.catalog.blockSize}-byte blocks and keeps them for good: ` +
      `only a store created with ${s.blockSize}-byte blocks (config file blockSize ${s.blockSize}, in a new data directory) can import it`,
      { blockSize: s.blockSize, storeBlockSize: x.catalog.blockSize });
  }
  const type = importedType(s);
  const limit = x.quota()[type];
  const count = quotaCounted(x.catalog.snapshotsOfDisk(disk.id), type).length;
  if (count >= limit) {
    throw new BlocksnapError('SnapshotQuotaExceeded',
      `disk ${disk.name} has ${count} ${type === 'auto' ? 'automatic' : 'manual'} snapshots, its quota is ${limit}; delete one before importing another`,
      { quota: limit, count });
  }
}

function importedType(s: ImportedSnapshot): SnapshotType {
  return s.type === 'auto' ? 'auto' : 'manual';
}

/** What an import that would reference a damaged block it did not carry tells the operator. */
const IMPORT_REPAIR_HINT = 'the import did not carry it (this host had it); import a full stream of a snapshot that carries it (a stream of a snapshot ' +
  'that is here mends it in place), or snapshot a disk ' +
  'whose image holds its good content, which writes it again, then retry';

/**
 * BlockMissing for a block the import relies on (it did not carry it) whose file this store lost
 * while its snapshots still name it; recorded for repair, as any reader records one.
 */
export function lostLocalBlock(x: OffsiteInternals, hex: string): BlocksnapError {
  x.repair.reportFound(hex, 'missing');
  return new BlocksnapError('BlockMissing', `block ${hex} is missing from the store, though snapshots here reference it: ${IMPORT_REPAIR_HINT}`, { digest: hex });
}

/**
 * BlockCorrupt for a block the import relies on (it did not carry it) whose file here has the
 * wrong size for where the map puts it, and fails its own checks: the store's damage, not the
 * stream's; recorded for repair, as any reader records one.
 */
export function damagedLocalBlock(hex: string, length: number, found: Extract<FoundBlock, { kind: 'damaged' }>): BlocksnapError {
  const what = found.size === null ? `its file ${found.path} is not a regular file`
    : `its file ${found.path} has ${found.size} bytes where a block of ${length} bytes takes ${BLOCK_HEADER_SIZE + length}`;
  const e = new BlocksnapError('BlockCorrupt',
    `block ${hex} is damaged in the store: ${what}, and the import did not carry it (this host had it). The block is recorded for repair. ` +
    `${VERIFY_NAMES_SHARERS}; ${SNAPSHOT_REWRITES}. Then import again`, { digest: hex, path: found.path });
  reportStoreDamage(e);
  return e;
}

/**
 * Before commitImported, under the shared store lock: a block of `map` listed as damaged in the
 * store that the import did not write again (`repaired`, hex) is read again, and fails the import
 * if it still is damaged (block-repair.ts).
 */
export async function checkImportDamage(x: OffsiteInternals, map: Buffer, repaired: string[], ctl: JobControl): Promise<void> {
  await x.repair.checkBeforeCommit(map, repaired, IMPORT_REPAIR_HINT, ctl);
}

/**
 * Before commitImported: makes durable the directory entries of the blocks an import found in the
 * store already and no committed snapshot references, and the store directory's (see
 * syncStoreEntries); the others are durable.
 */
export async function syncFoundBlocks(x: OffsiteInternals, found: string[]): Promise<void> {
  await syncStoreEntries(x.store.dir, found.filter((hex) => !x.catalog.isReferenced(Buffer.from(hex, 'hex'))));
}

/** `repaired`: the blocks listed as damaged that the import wrote again (hex); their marks go in the commit. */
export function commitImported(x: OffsiteInternals, disk: DiskRecord, s: ImportedSnapshot, map: Buffer, jobId: string, repaired: string[] = []): SnapshotRecord {
  if (map.length !== s.blockCount * DIGEST_SIZE) throw new BlocksnapError('Internal', `map of ${map.length} bytes for ${s.blockCount} blocks`);
  return x.catalog.txn(() => {
    checkImportable(x, s, disk);
    x.repair.settle(map, repaired, IMPORT_REPAIR_HINT);
    const parentRec = s.parentId ? x.catalog.getSnapshot(s.parentId) : undefined;
    const parent = parentRec && parentRec.diskId === disk.id && parentRec.status === 'available' ? parentRec : undefined;
    const taken = (n: string): boolean => x.catalog.snapshotsOfDisk(disk.id).some((o) => o.name === n);
    let name: string;
    try {
      name = uniqueName(validateName('snapshot', s.name), taken);
    } catch {
      name = uniqueName('imported', taken);
    }
    const rec: SnapshotRecord = {
      id: s.id, diskId: disk.id, name, description: s.description, status: 'available', type: importedType(s),
      parentId: parent ? parent.id : null, createdAt: s.createdAt, completedAt: new Date().toISOString(),
      sizeBytes: s.sizeBytes, blockSize: s.blockSize, blockCount: s.blockCount, logicalBytes: 0, changedBlocks: 0, newBytes: 0,
      error: null, jobId, tags: {}, groupId: null, ...(s.consistency ? { consistency: s.consistency } : {}),
    };
    const stats = commitDelta(x.catalog, rec, map, parent ? readView(x.catalog, parent) : null);
    const done: SnapshotRecord = { ...rec, ...stats };
    x.catalog.putSnapshot(done);
    return done;
  });
}
