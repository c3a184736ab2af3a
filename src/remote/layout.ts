/**
 * Object layout of a remote (frozen; docs/design.md "Remote layout"). Under the remote's prefix:
 *
 *   blocks/<3 hex>/<64 hex>            one block's raw bytes, named by their SHA-256
 *   manifests/<diskId>/<snapshotId>.json  a snapshot's manifest (manifest.ts); written last
 *   leases/<kind>.<hostId>.<jobId>.json   a live writer or gc (leases.ts)
 *
 * The fan-out mirrors the local store's so that a listing can be split by digest range.
 */
import { FANOUT_HEX_CHARS } from '../store/format';

export const BLOCKS = 'blocks';
export const MANIFESTS = 'manifests';
export const LEASES = 'leases';
const MANIFEST_SUFFIX = '.json';

export function join(prefix: string, ...parts: string[]): string {
  return [prefix, ...parts].filter((p) => p !== '').join('/');
}

export function blockKey(prefix: string, digestHex: string): string {
  return join(prefix, BLOCKS, digestHex.slice(0, FANOUT_HEX_CHARS), digestHex);
}

export function manifestKey(prefix: string, diskId: string, snapshotId: string): string {
  return join(prefix, MANIFESTS, diskId, `${snapshotId}${MANIFEST_SUFFIX}`);
}

const DIGEST_KEY = /\/([0-9a-f]{3})\/([0-9a-f]{64})$/;
const MANIFEST_KEY = /\/(d-[0-9a-f]{16})\/(s-[0-9a-f]{16})\.json$/;

/** The digest a block key names, or null for a key that is not a block (ignored, never deleted). */
export function digestOfKey(key: string): string | null {
  const m = DIGEST_KEY.exec(key);
  return m && m[2]!.startsWith(m[1]!) ? m[2]! : null;
}

export function idsOfManifestKey(key: string): { diskId: string; snapshotId: string } | null {
  const m = MANIFEST_KEY.exec(key);
  return m ? { diskId: m[1]!, snapshotId: m[2]! } : null;
}
