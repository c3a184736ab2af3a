/**
 * Public shapes of the off-host jobs (remotes, replication, streams): what the daemon returns.
 * Field names are part of the outside contract and only ever grow.
 */
import type { RemoteConfig } from '../remote/config';

export type Remote = RemoteConfig;

export interface RemoteCheck {
  name: string;
  endpoint: string;
  bucket: string;
  prefix: string;
  /** Round trip of a probe object: put, get, delete. */
  latencyMs: number;
}

/** A snapshot as its manifest on a remote describes it. */
export interface RemoteSnapshot {
  id: string;
  diskId: string;
  diskName: string;
  name: string;
  description: string;
  parentId: string | null;
  createdAt: string;
  sizeBytes: number;
  blockSize: number;
  logicalBytes: number;
  host: string;
  replicatedAt: string;
  key: string;
  /** Null: the manifest was read and checked. */
  damaged: null;
}

/** Why a manifest cannot be used: a stable error code (`RemoteCorrupt`) and what is wrong with it. */
export interface RemoteDamage { code: string; message: string }

/**
 * A snapshot whose manifest is on the remote but does not decode, or holds another snapshot than
 * its key names: only what its key says (`id`, `diskId`) is known, every other field is null. It
 * cannot be restored or imported, and remote gc refuses to run while it is there (what it
 * references is unknown); `remote delete --force` removes it.
 */
export type DamagedRemoteSnapshot =
  & Pick<RemoteSnapshot, 'id' | 'diskId' | 'key'>
  & { [K in Exclude<keyof RemoteSnapshot, 'id' | 'diskId' | 'key' | 'damaged'>]: null }
  & { damaged: RemoteDamage };

/** An entry of a remote's snapshot listing. */
export type RemoteSnapshotEntry = RemoteSnapshot | DamagedRemoteSnapshot;

export interface ReplicateResult {
  remote: string;
  /** Snapshots whose manifest this job wrote, oldest first. */
  replicated: string[];
  /** Snapshots the remote had already. */
  alreadyPresent: string[];
  uploadedBlocks: number;
  uploadedBytes: number;
  /** Blocks the remote already held (found by HEAD, or named by the parent's manifest). */
  skippedBlocks: number;
  manifestBytes: number;
  retries: number;
}

export interface RestoreResult {
  remote: string;
  snapshotId: string;
  path: string;
  sizeBytes: number;
  format: 'raw' | 'qcow2';
  downloadedBlocks: number;
  downloadedBytes: number;
}

export interface ImportResult {
  /** The snapshot as committed locally (same id as on the source). */
  snapshotId: string;
  diskId: string;
  parentId: string | null;
  /** Its name here: the source's, unless the disk already had a snapshot of that name (then with a suffix, -2, -3, ...). */
  name: string;
  /** The source's name when `name` differs from it; null otherwise. */
  renamedFrom: string | null;
  /** Blocks fetched (from the remote or the stream) and stored. */
  storedBlocks: number;
  storedBytes: number;
  /** Blocks the local store held already. */
  presentBlocks: number;
  /**
   * Blocks the local store held damaged or had lost, written again from the import: those recorded
   * for repair, or, when `mended`, every one of the snapshot's blocks found so.
   */
  repairedBlocks: number;
  /**
   * True when the snapshot was here already with the same block map (a stream or a remote copy of
   * the same snapshot): nothing was committed, the catalog is as it was, and the import only wrote
   * again the snapshot's blocks that were missing or damaged (`repairedBlocks`; `presentBlocks`,
   * those found intact: a stream's, those it carried; a remote's, all the others, not downloaded).
   * `name`, `parentId` are the local snapshot's.
   */
  mended: boolean;
}

/** A block a remote's manifests reference that is not there intact. */
export interface RemoteBlockProblem {
  digest: string;
  key: string;
  problem: 'missing' | 'damaged';
  /** The snapshots on the remote that reference it (their restores fail with RemoteCorrupt). */
  snapshots: string[];
  /** Uploaded again from this host's store (remote verify --repair). */
  repaired: boolean;
}

export interface RemoteVerifyResult {
  remote: string;
  /** Manifests whose blocks were checked. */
  snapshots: number;
  checkedBlocks: number;
  checkedBytes: number;
  problems: RemoteBlockProblem[];
  /** Keys of manifests that cannot be read: their blocks are unknown, so not checked. */
  damagedManifests: string[];
}

export interface RemoteGcResult {
  remote: string;
  manifests: number;
  referencedBlocks: number;
  deletedBlocks: number;
  deletedBytes: number;
  /** Unreferenced blocks younger than the grace period: kept this time. */
  youngBlocks: number;
  keptBlocks: number;
  /** Seconds spent waiting for other hosts' replications to finish. */
  waitedSeconds: number;
}

export interface ExportResult {
  snapshotId: string;
  baseId: string | null;
  /** The stream file; null when the stream went through the socket (`-o -`). */
  path: string | null;
  blocks: number;
  /** Size of the stream. */
  bytes: number;
}
