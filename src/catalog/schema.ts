/**
 * Frozen layout of the catalog (one LMDB environment, `<data-dir>/catalog.mdb`). Changing a
 * database's key or value shape is a schema version bump; the catalog refuses to open a version
 * it does not know (CatalogVersion).
 *
 *   meta       string key -> msgpack       schemaVersion, blockSize, storeTotals, createdAt,
 *                                          storeId, generation (store-stamp.ts)
 *   disks      diskId -> DiskRecord
 *   snapshots  snapshotId -> SnapshotRecord
 *   diskSnaps  [diskId, snapshotId] -> 1       index: a disk's snapshots
 *   maps       [snapshotId, blockIndex] -> 32-byte digest, or 0 bytes for ZERO
 *              Only the blocks where a snapshot differs from its parent's view (its delta).
 *   refs       digest (32 bytes) -> [count, rawBytes]   count = map entries naming the digest
 *   free       digest -> unix ms             blocks whose count reached 0, awaiting the sweeper
 *   jobs       jobId -> Job
 *   policies   policyId -> PolicyRecord      automatic snapshot schedules and retention
 *   policyDisks  diskId -> PolicyBinding    a disk's one policy, and the last due time handled for it
 *   groups     groupId -> GroupRecord        snapshot groups ("instance snapshots")
 *   remotes    name -> RemoteConfig (src/remote/config.ts): endpoint, bucket, prefix and the
 *              credentials file's path, never its secrets; key "\u0000host" -> this data dir's
 *              host id, named in the leases it takes on shared buckets. Added like the three above.
 *   damaged    digest (32 bytes) -> DamagedBlockRecord (damaged-blocks.ts): stored blocks found
 *              damaged or missing (store verify, or a reader's DigestMismatch / BlockCorrupt /
 *              BlockMissing), which the next
 *              snapshot or import that produces the block writes again. Added like `remotes`: a
 *              new database an older version never opens (it would only miss the repairs).
 *
 * Version 2 added `cow` to disk records (copy-on-write disks); a version 1 catalog is migrated
 * when opened, in one transaction: every disk gets `cow: null`.
 *
 * Version 3 changes no record: it marks the data dirs whose copy-on-write layers may hold
 * version 2 layer maps (native/volume/cow_format.h), which versions reading schema 2 take for
 * corrupt. The version is the whole data dir's, not only the catalog's: a change to the shape of
 * any file under it (layer maps, granule files, block files) needs a bump too, so that an older
 * daemon refuses the data dir (CatalogVersion, "upgrade") instead of failing on what it holds.
 * Versions 1 and 2 are migrated when opened.
 *
 * The last three databases, the `storeId` and `generation` meta keys, the `tags`/`groupId` fields of snapshot records, the
 * `scheduleChangedAt` field of policy records, and the `formatSource`, `givenPath` and `registeredBy` fields and
 * the rollback journal's `writesBegun` field of disk records were added without a version bump:
 * they are new keys and optional fields that an older record simply lacks (read as no tags, no
 * group, a schedule last changed at the policy's updatedAt, a format detected at `disk add`, no
 * name besides the real path, a raw rollback that may have written), not a change of any existing
 * shape. An older version reading a journal with `writesBegun` ignores it and takes the rollback as
 * possibly written, the safe side; one reading a `givenPath` ignores it, and checks the real path
 * only, as it always did. A disk record's `registeredBy` was added so too: absent, the disk is
 * opened with the daemon's rights as before; an older version ignores it, and with it the checks
 * of the registering user's rights after `disk add`.
 */
export const SCHEMA_VERSION = 3;
export const CATALOG_FILE = 'catalog.mdb';

export const META_SCHEMA_VERSION = 'schemaVersion';
export const META_BLOCK_SIZE = 'blockSize';
export const META_STORE_TOTALS = 'storeTotals';
export const META_CREATED_AT = 'createdAt';
/**
 * The catalog's identity and the count of its commits that changed the set of referenced or freed
 * blocks, mirrored in the store's stamp (store-stamp.ts). Added without a version bump: a catalog
 * that lacks them is one an older version wrote, given an identity at its first start.
 */
export const META_STORE_ID = 'storeId';
export const META_GENERATION = 'generation';

export const REMOTES_DB = 'remotes';
export const DAMAGED_DB = 'damaged';

/** How many finished jobs the catalog keeps for `job list`. */
export const JOB_HISTORY_LIMIT = 1000;
