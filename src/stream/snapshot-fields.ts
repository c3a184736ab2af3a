/**
 * Checks of a snapshot record that arrives from elsewhere — a stream header (format.ts) or a
 * remote manifest (src/remote/manifest.ts) — before any of it is used or stored in the catalog.
 * Both carry the same record; a checksum only proves the bytes are the ones the writer sealed, not
 * that the writer was blocksnap, so every field is checked for its type, shape and bounds here,
 * in one place, and the first wrong one is named.
 */
import { NAME_MAX } from '../engine/names';
import { DESCRIPTION_MAX, charCount } from '../engine/text-fields';
import type { SnapshotConsistency } from '../engine/types';
import { BlocksnapError } from '../errors';
import { DIGEST_SIZE, isValidBlockSize, isZeroDigest } from '../store/format';

/**
 * The most blocks a snapshot may have: its packed map (32 bytes per block) is held in one Buffer,
 * and 2^27 × 32 bytes = 4 GiB is the largest Buffer Node allocates on 64-bit hosts. With the
 * default 4 MiB blocks that is 512 PiB of disk.
 */
export const MAX_BLOCK_COUNT = 2 ** 27;
/** The largest disk: sizes are JavaScript numbers throughout, so exact only up to 2^53 - 1. */
export const MAX_SIZE_BYTES = Number.MAX_SAFE_INTEGER;

export interface IncomingSnapshot {
  id: string; diskId: string; diskName: string; name: string; description: string; type: 'manual' | 'auto';
  parentId: string | null; createdAt: string; sizeBytes: number; blockSize: number; blockCount: number; logicalBytes: number;
  /** Absent in streams and manifests written before it was carried: unknown (null) here then. */
  consistency?: SnapshotConsistency | null;
}

const CONSISTENCIES: readonly unknown[] = ['offline', 'crash', 'point-in-time'] satisfies SnapshotConsistency[];

/** Reports a bad field; the caller turns it into its own error (StreamCorrupt, RemoteCorrupt). */
export type FieldError = (field: string, why: string) => Error;

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2}))$/;

/**
 * An ISO 8601 timestamp naming a real instant. The shape alone lets through dates no calendar
 * has (2026-02-30) and 24:00, which Date.parse quietly moves to another day: each field must be
 * in range, the day one its month has.
 */
export function isIsoTimestamp(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  const m = ISO_RE.exec(v);
  if (m === null) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day));
  // Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear does not.
  date.setUTCFullYear(year);
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return false;
  if (hour > 23 || minute > 59 || second > 59) return false;
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return false;
  return !Number.isNaN(Date.parse(v));
}

/** The id shape of src/engine/ids.ts: prefix, dash, 16 lowercase hex digits. */
export function isIdOf(prefix: 'd' | 's', v: unknown): v is string {
  return typeof v === 'string' && v.length === 18 && v.startsWith(`${prefix}-`) && /^[0-9a-f]{16}$/.test(v.slice(2));
}

function isCount(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max && !Object.is(v, -0);
}

export function checkTimestamp(v: unknown, field: string, fail: FieldError): string {
  if (!isIsoTimestamp(v)) throw fail(field, 'is not an ISO-8601 timestamp');
  return v;
}

/**
 * Checks an incoming snapshot record field by field and returns it typed; `prefix` names the
 * record in the error (fields a container adds, such as a manifest's completedAt, it checks itself).
 */
export function checkIncomingSnapshot(v: unknown, fail: FieldError, prefix = 'snapshot'): IncomingSnapshot {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw fail(prefix, 'is not an object');
  const s = v as Record<string, unknown>;
  const f = (k: string): string => `${prefix}.${k}`;
  const str = (k: string, max: number, min = 0): string => {
    const x = s[k];
    // Characters as the engine counts them when it takes a description (text-fields.ts).
    if (typeof x !== 'string' || charCount(x) < min || charCount(x) > max) throw fail(f(k), `is not a string of ${min} to ${max} characters`);
    return x;
  };
  if (!isIdOf('s', s.id)) throw fail(f('id'), 'is not a snapshot id');
  if (!isIdOf('d', s.diskId)) throw fail(f('diskId'), 'is not a disk id');
  str('diskName', NAME_MAX, 1);
  str('name', NAME_MAX, 1);
  str('description', DESCRIPTION_MAX);
  if (s.type !== 'manual' && s.type !== 'auto') throw fail(f('type'), 'is neither "manual" nor "auto"');
  if (s.parentId !== null && !isIdOf('s', s.parentId)) throw fail(f('parentId'), 'is neither null nor a snapshot id');
  checkTimestamp(s.createdAt, f('createdAt'), fail);
  if (typeof s.blockSize !== 'number' || !isValidBlockSize(s.blockSize)) throw fail(f('blockSize'), 'is not a power of two from 64 KiB to 64 MiB');
  if (!isCount(s.sizeBytes, MAX_SIZE_BYTES)) throw fail(f('sizeBytes'), `is not an integer from 0 to ${MAX_SIZE_BYTES}`);
  if (!isCount(s.blockCount, MAX_BLOCK_COUNT)) throw fail(f('blockCount'), `is not an integer from 0 to ${MAX_BLOCK_COUNT}`);
  if (s.blockCount !== Math.ceil(s.sizeBytes / (s.blockSize as number))) throw fail(f('blockCount'), 'is not ceil(sizeBytes / blockSize)');
  if (!isCount(s.logicalBytes, s.sizeBytes as number)) throw fail(f('logicalBytes'), 'is not an integer from 0 to sizeBytes');
  if (s.consistency !== undefined && s.consistency !== null && !CONSISTENCIES.includes(s.consistency)) {
    throw fail(f('consistency'), 'is none of null, "offline", "crash", "point-in-time"');
  }
  return s as unknown as IncomingSnapshot;
}

/** The length block `index` of a snapshot must have: blockSize, except a shorter last block. */
export function blockLengthAt(index: number, sizeBytes: number, blockSize: number): number {
  return Math.min(blockSize, sizeBytes - index * blockSize);
}

/**
 * The distinct non-ZERO digests of a packed map, as hex, each with the length its positions need.
 * A map that names one digest both at the short last position and at a whole one can match no
 * block (a SHA-256 names bytes of one length): `conflict` makes the error for it. Maps this host
 * built never do that, hence Internal by default.
 */
export function distinctDigests(map: Buffer, sizeBytes: number, blockSize: number,
  conflict: (hex: string) => Error = (hex) => new BlocksnapError('Internal', `a block map names block ${hex} at positions that need different lengths`)): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i * DIGEST_SIZE < map.length; i++) {
    if (isZeroDigest(map, i * DIGEST_SIZE)) continue;
    const hex = map.toString('hex', i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE);
    const len = blockLengthAt(i, sizeBytes, blockSize);
    const prev = out.get(hex);
    if (prev === undefined) out.set(hex, len);
    else if (prev !== len) throw conflict(hex);
  }
  return out;
}
