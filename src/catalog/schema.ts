/**
 * Frozen layout of the catalog (one LMDB environment, `<data-dir>/catalog.mdb`). Changing a
 * database's key or value shape is a schema version bump; the catalog refuses to open a version
 * it does not know (CatalogVersion).
 *
 *   meta       string key -> msgpack       schemaVersion, blockSize, storeTotals, createdAt
 *   disks      diskId -> DiskRecord
 *   snapshots  snapshotId -> SnapshotRecord
 *   diskSnaps  [diskId, snapshotId] -> 1       index: a disk's snapshots
 *   maps       [snapshotId, blockIndex] -> 32-byte digest, or 0 bytes for ZERO
 *              Only the blocks where a snapshot differs from its parent's view (its delta).
 *   refs       digest (32 bytes) -> [count, rawBytes]   count = map entries naming the digest
 *   free       digest -> unix ms             blocks whose count reached 0, awaiting the sweeper
 *   jobs       jobId -> Job
 */
export const SCHEMA_VERSION = 1;
export const CATALOG_FILE = 'catalog.mdb';

export const META_SCHEMA_VERSION = 'schemaVersion';
export const META_BLOCK_SIZE = 'blockSize';
export const META_STORE_TOTALS = 'storeTotals';
export const META_CREATED_AT = 'createdAt';

/** How many finished jobs the catalog keeps for `job list`. */
export const JOB_HISTORY_LIMIT = 1000;
