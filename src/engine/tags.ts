/**
 * Snapshot tags: small key=value labels an operator or a script attaches to a snapshot and then
 * selects by (`snapshot list --tag k=v`). Limits follow the cloud services' resource tags, so a
 * tag set copied from there fits here.
 */
import { BlocksnapError } from '../errors';
import { CONTROL_RE, charCount } from './text-fields';

export const TAG_KEY_MAX = 128;
export const TAG_VALUE_MAX = 256;
export const TAGS_PER_SNAPSHOT_MAX = 20;

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/;

export function validateTagKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > TAG_KEY_MAX || !KEY_RE.test(key)) {
    throw new BlocksnapError('InvalidArgument',
      `invalid tag key ${JSON.stringify(key)}: use 1-${TAG_KEY_MAX} characters of A-Z a-z 0-9 . _ : / @ + -, starting with a letter or digit`);
  }
  return key;
}

export function validateTagValue(key: string, value: unknown): string {
  if (typeof value !== 'string' || charCount(value) > TAG_VALUE_MAX || CONTROL_RE.test(value)) {
    throw new BlocksnapError('InvalidArgument', `invalid value for tag ${key}: use at most ${TAG_VALUE_MAX} characters without control characters`);
  }
  return value;
}

/** Validates a whole tag map (keys and values), returning a fresh plain object. */
export function validateTags(tags: unknown): Record<string, string> {
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) {
    throw new BlocksnapError('InvalidArgument', 'tags must be a map of tag keys to string values');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(tags)) out[validateTagKey(k)] = validateTagValue(k, v);
  return out;
}

/** `current` with `add` set (overwriting equal keys); refuses to grow past the per-snapshot limit. */
export function withTags(current: Record<string, string>, add: Record<string, string>): Record<string, string> {
  const next = { ...current, ...validateTags(add) };
  if (Object.keys(next).length > TAGS_PER_SNAPSHOT_MAX) {
    throw new BlocksnapError('InvalidArgument', `a snapshot has at most ${TAGS_PER_SNAPSHOT_MAX} tags`);
  }
  return next;
}

/** `current` without `keys`; removing a key that is not there is not an error (the end state is what was asked). */
export function withoutTags(current: Record<string, string>, keys: string[]): Record<string, string> {
  const next = { ...current };
  for (const k of keys) delete next[validateTagKey(k)];
  return next;
}

/** True when every key=value of `filter` is on the snapshot. */
export function matchesTags(tags: Record<string, string>, filter: Record<string, string>): boolean {
  return Object.entries(filter).every(([k, v]) => Object.prototype.hasOwnProperty.call(tags, k) && tags[k] === v);
}
