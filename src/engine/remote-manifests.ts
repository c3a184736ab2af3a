/**
 * The manifests of a remote as its listing, deletion, restore, import and gc read them. A manifest
 * that does not decode, or that holds another snapshot than its key names, comes back with its
 * damage rather than as an error, so that one damaged manifest fails none of the others: the
 * listing shows it, gc refuses to mark past it, restore and import refuse it (usable).
 */
import { BlocksnapError, toBlocksnapError } from '../errors';
import type { RemoteConfig } from '../remote/config';
import { idsOfManifestKey, join, manifestKey, MANIFESTS } from '../remote/layout';
import { decodeManifest, type Manifest } from '../remote/manifest';
import type { ObjectStore } from '../remote/object-store';
import { looksLikeId, someOf } from './ids';
import type { DamagedRemoteSnapshot, RemoteSnapshot } from './offsite-types';

export interface Located { key: string; manifest: Manifest }

/**
 * A manifest object of this remote as read. `manifest` when it decodes; `damage` when it does not,
 * or when it holds another snapshot than its key names (then `manifest` is still what it holds:
 * gc counts its blocks as referenced). `diskId` and `snapshotId` are what the key names.
 */
export interface ManifestRead { key: string; diskId: string; snapshotId: string; manifest: Manifest | null; damage: BlocksnapError | null }

/** Every manifest of this remote, each decoded or with its damage: one damaged manifest fails none of the others. */
export async function readManifests(remote: RemoteConfig, store: ObjectStore, signal?: AbortSignal): Promise<ManifestRead[]> {
  const out: ManifestRead[] = [];
  for (const key of await manifestKeys(remote, store, signal)) {
    const m = await readManifestAt(store, key, signal);
    if (m) out.push(m);
  }
  return out;
}

/**
 * The keys of this remote's manifests, listed whole before any is read: a walk that reads one
 * manifest at a time (remote verify) holds one map, not all, and no listing stays open meanwhile.
 */
export async function manifestKeys(remote: RemoteConfig, store: ObjectStore, signal?: AbortSignal): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(`${join(remote.prefix, MANIFESTS)}/`, signal)) {
    if (isManifestKey(remote.prefix, o.key)) keys.push(o.key);
  }
  return keys;
}

/** The manifest at a listed key, decoded or with its damage; null when it is gone since the listing. */
export async function readManifestAt(store: ObjectStore, key: string, signal?: AbortSignal): Promise<ManifestRead | null> {
  const raw = await store.get(key, signal);
  return raw ? readManifest(raw, key) : null;
}

/**
 * A remote snapshot by id (one LIST) or by unique name (reads the manifests), damaged or not. A
 * name is not resolved while some manifest cannot be used: that one may carry the name too.
 */
export async function locate(remote: RemoteConfig, store: ObjectStore, ref: string, signal?: AbortSignal): Promise<ManifestRead> {
  if (typeof ref !== 'string' || ref.length === 0) throw new BlocksnapError('InvalidArgument', 'a snapshot id or name is required');
  if (looksLikeId('s', ref)) {
    for await (const o of store.list(`${join(remote.prefix, MANIFESTS)}/`, signal)) {
      if (!isManifestKey(remote.prefix, o.key) || idsOfManifestKey(o.key)?.snapshotId !== ref) continue;
      const raw = await store.get(o.key, signal);
      if (raw) return readManifest(raw, o.key);
    }
  } else {
    const all = await readManifests(remote, store, signal);
    const byName = all.filter((m) => m.damage === null && m.manifest!.snapshot.name === ref);
    if (byName.length > 1) {
      throw new BlocksnapError('AmbiguousName', `${byName.length} snapshots on remote ${remote.name} are named ${JSON.stringify(ref)} (${someOf(byName.map((m) => m.snapshotId))}); use the id`);
    }
    const damaged = all.filter((m) => m.damage !== null);
    if (damaged.length > 0) {
      throw new BlocksnapError('RemoteCorrupt', `remote ${remote.name} has ${damaged.length} manifest(s) that cannot be read (${someOf(damaged.map((m) => m.snapshotId))}), which may be named ${JSON.stringify(ref)} too; use the snapshot's id`, { snapshots: damaged.map((m) => m.snapshotId) });
    }
    if (byName.length === 1) return byName[0]!;
  }
  throw new BlocksnapError('SnapshotNotFound', `remote ${remote.name} has no snapshot ${JSON.stringify(ref)}`);
}

/**
 * Decodes a manifest read from `key`, keeping what is wrong with it rather than throwing. A
 * manifest must name the snapshot its key names: the checksum covers the text, not the key, and a
 * manifest copied or renamed to another snapshot's key would restore, or import under the id
 * asked for, a different snapshot's data.
 */
function readManifest(raw: Buffer, key: string): ManifestRead {
  const ids = idsOfManifestKey(key)!;
  let manifest: Manifest;
  try {
    manifest = decodeManifest(raw, key);
  } catch (err) {
    const e = toBlocksnapError(err);
    if (e.code !== 'RemoteCorrupt') throw e;
    return { key, ...ids, manifest: null, damage: e };
  }
  const s = manifest.snapshot;
  const damage = ids.snapshotId !== s.id || ids.diskId !== s.diskId
    ? new BlocksnapError('RemoteCorrupt', `manifest ${key} holds snapshot ${s.id} of disk ${s.diskId}, not the one its key names`, { key })
    : null;
  return { key, ...ids, manifest, damage };
}

/** The manifest of a snapshot to restore or import from: one with any damage is refused. */
export function usable(m: ManifestRead): Located {
  if (m.damage !== null) throw m.damage;
  return { key: m.key, manifest: m.manifest! };
}


/** A manifest of this remote, not of one whose prefix lies under its manifests/. */
function isManifestKey(prefix: string, key: string): boolean {
  const ids = idsOfManifestKey(key);
  return ids !== null && key === manifestKey(prefix, ids.diskId, ids.snapshotId);
}

export function describe(key: string, m: Manifest): RemoteSnapshot {
  const s = m.snapshot;
  return {
    id: s.id, diskId: s.diskId, diskName: s.diskName, name: s.name, description: s.description, parentId: s.parentId, createdAt: s.createdAt,
    sizeBytes: s.sizeBytes, blockSize: s.blockSize, logicalBytes: s.logicalBytes, host: m.host, replicatedAt: m.replicatedAt, key, damaged: null,
  };
}

export function describeDamaged(m: ManifestRead): DamagedRemoteSnapshot {
  return {
    id: m.snapshotId, diskId: m.diskId, diskName: null, name: null, description: null, parentId: null, createdAt: null, sizeBytes: null,
    blockSize: null, logicalBytes: null, host: null, replicatedAt: null, key: m.key, damaged: { code: m.damage!.code, message: m.damage!.message },
  };
}
