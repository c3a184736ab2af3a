/**
 * A snapshot's manifest on a remote (frozen, version 1; docs/design.md "Remote layout"): the
 * snapshot's identity and its whole block map, so that any host can restore it from the bucket
 * alone. One JSON object:
 *
 *   format "blocksnap-manifest", version 1,
 *   snapshot {id, diskId, diskName, name, description, type, parentId, createdAt, completedAt,
 *             sizeBytes, blockSize, blockCount, logicalBytes, consistency (absent before it was
 *             carried)},
 *   host, replicatedAt,
 *   map     base64 of blockCount × 32 bytes (SHA-256 per block, 32 zero bytes for ZERO),
 *   sha256  hex SHA-256 of the JSON text of the object without this field, in this key order.
 *
 * It is uploaded only after every block it names is in the bucket, and gc never deletes a block a
 * manifest names: a visible manifest is always restorable.
 */
import { createHash } from 'node:crypto';
import { BlocksnapError } from '../errors';
import { DIGEST_SIZE } from '../store/format';
import { checkIncomingSnapshot, checkTimestamp, distinctDigests, isIsoTimestamp, type IncomingSnapshot } from '../stream/snapshot-fields';

export const MANIFEST_FORMAT = 'blocksnap-manifest';
export const MANIFEST_VERSION = 1;
/** The longest host name a manifest may carry (a DNS name is at most 253 characters). */
const HOST_MAX = 255;

/** The stream header's snapshot record, and when the snapshot was completed. */
export interface ManifestSnapshot extends IncomingSnapshot {
  completedAt: string | null;
}

export interface Manifest {
  snapshot: ManifestSnapshot;
  host: string;
  replicatedAt: string;
  /** blockCount × 32 bytes. */
  map: Buffer;
}

function checksum(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function encodeManifest(m: Manifest): Buffer {
  const body = {
    format: MANIFEST_FORMAT, version: MANIFEST_VERSION, snapshot: m.snapshot, host: m.host, replicatedAt: m.replicatedAt,
    map: m.map.toString('base64'),
  };
  const text = JSON.stringify(body);
  return Buffer.from(`${text.slice(0, -1)},"sha256":"${checksum(text)}"}\n`);
}

/** Parses and checks a manifest; anything wrong is RemoteCorrupt naming the key. */
export function decodeManifest(raw: Buffer, key: string): Manifest {
  const corrupt = (why: string): BlocksnapError => new BlocksnapError('RemoteCorrupt', `manifest ${key} ${why}`, { key });
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw corrupt('is not valid JSON');
  }
  if (!obj || typeof obj !== 'object' || obj.format !== MANIFEST_FORMAT) throw corrupt('is not a blocksnap manifest');
  if (obj.version !== MANIFEST_VERSION) throw corrupt(`has version ${String(obj.version)}; this blocksnap reads version ${MANIFEST_VERSION}`);
  const { sha256, ...rest } = obj;
  if (typeof sha256 !== 'string' || sha256 !== checksum(JSON.stringify(rest))) throw corrupt('fails its checksum');
  // The checksum proves only that the text is whole, not who wrote it: every field is checked
  // before anything of it reaches the catalog (src/stream/snapshot-fields.ts, shared with streams).
  const badField = (field: string, why: string): BlocksnapError => corrupt(`field ${field} ${why}`);
  const s = checkIncomingSnapshot(obj.snapshot, badField) as ManifestSnapshot;
  if (s.completedAt !== null && !isIsoTimestamp(s.completedAt)) throw badField('snapshot.completedAt', 'is neither null nor an ISO-8601 timestamp');
  if (typeof obj.host !== 'string' || obj.host.length > HOST_MAX) throw badField('host', `is not a string of at most ${HOST_MAX} characters`);
  checkTimestamp(obj.replicatedAt, 'replicatedAt', badField);
  if (typeof obj.map !== 'string') throw badField('map', 'is not a base64 string');
  const map = Buffer.from(obj.map, 'base64');
  if (map.length !== s.blockCount * DIGEST_SIZE) throw corrupt(`has a map of ${map.length} bytes for ${s.blockCount} blocks`);
  distinctDigests(map, s.sizeBytes, s.blockSize, (hex) => corrupt(`names block ${hex} at positions that need different lengths`));
  return { snapshot: s, host: obj.host, replicatedAt: obj.replicatedAt as string, map };
}
