/**
 * Param fields of the policy, group and tag methods (lists and maps), in the same style as
 * params.ts: each completes "params.x must be ...".
 */
import { GROUP_DISKS_MAX } from '../engine/groups';
import type { Field } from './params';
import { isPlainMap } from './protocol/messages';

const ITEMS_MAX = 1024;

function field<T>(expected: string, accepts: (v: unknown) => v is T): Field<T> {
  return { expected, optional: false, accepts };
}

function boundedStringList(max: number): Field<string[]> {
  return field(
    `a non-empty array of at most ${max} non-empty strings`,
    (v): v is string[] => Array.isArray(v) && v.length > 0 && v.length <= max && v.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 4096),
  );
}

/** A non-empty array of non-empty strings (disk refs, tag keys). */
export const stringList: Field<string[]> = boundedStringList(ITEMS_MAX);

/** The disks of a group: the engine's own limit, so the refusal states the limit that holds. */
export const groupDiskList: Field<string[]> = boundedStringList(GROUP_DISKS_MAX);

/** A non-empty array of integers within [min, max] (hours, weekdays). */
export function integerList(min: number, max: number): Field<number[]> {
  return field(`a non-empty array of integers from ${min} to ${max}`,
    (v): v is number[] => Array.isArray(v) && v.length > 0 && v.length <= ITEMS_MAX && v.every((n) => Number.isSafeInteger(n) && n >= min && n <= max));
}

/** A map of string keys to string values (tags). */
export const stringMap: Field<Record<string, string>> = field(
  'a map of strings to strings',
  (v): v is Record<string, string> => isPlainMap(v) && Object.values(v).every((s) => typeof s === 'string'),
);
