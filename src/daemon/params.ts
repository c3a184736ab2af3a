/**
 * Request parameter validation. Every method declares its params as a shape of fields; one
 * function checks a request against it so that every complaint reads the same way:
 * `params.<name> must be <expectation>` (InvalidArgument). Unknown params are rejected too: a
 * misspelt option silently ignored is worse than an error.
 *
 * Only types and syntax are checked here. Meaning (does the disk exist, is the path inside an
 * image root, is the name free) belongs to the engine, which is the one place that can know.
 */
import { isAbsolute } from 'node:path';
import { BlocksnapError } from '../errors';
import { charCount } from '../engine/text-fields';
import { describeType, type Params } from './protocol/messages';

export interface Field<T, Optional extends boolean = false> {
  /** Completes "params.x must be ...". */
  readonly expected: string;
  readonly optional: Optional;
  accepts(value: unknown): value is T;
  /** A refusal more precise than `expected` for some values it does not accept; null for the rest. */
  refusal?(value: unknown): string | null;
}

export type Shape = Record<string, Field<unknown, boolean>>;

type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends Field<unknown, true> ? K : never }[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type ValueOf<F> = F extends Field<infer T, boolean> ? T : never;

/** The validated params of a shape: optional fields are absent (never undefined) when not given. */
export type ParamsOf<S extends Shape> = { [K in RequiredKeys<S>]: ValueOf<S[K]> } & { [K in OptionalKeys<S>]?: ValueOf<S[K]> };

function field<T>(expected: string, accepts: (value: unknown) => value is T): Field<T> {
  return { expected, optional: false, accepts };
}

export const MAX_STRING_LENGTH = 4096;

export const string: Field<string> = field(
  `a string of 1 to ${MAX_STRING_LENGTH} characters`,
  (v): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_STRING_LENGTH,
);

/**
 * The name of an object a method creates or renames: any string passes here, so that an empty,
 * long or malformed name is refused by the engine, which knows each kind's rules, with
 * InvalidName, as on every other path (a frame's size bounds it).
 */
export const objectName: Field<string> = field('a string', (v): v is string => typeof v === 'string');

export const MAX_KEY_LENGTH = 128;

/**
 * A job id or a remote's name: looked up as a catalog key, which may not exceed about 2000 bytes.
 * Every id and such name is far shorter, so a longer one is refused here rather than by the catalog.
 */
export const key: Field<string> = field(
  `a string of 1 to ${MAX_KEY_LENGTH} characters`,
  (v): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_KEY_LENGTH,
);

/** Free text (descriptions): may be empty. */
export const text: Field<string> = field(
  `a string of at most ${MAX_STRING_LENGTH} characters`,
  (v): v is string => typeof v === 'string' && v.length <= MAX_STRING_LENGTH,
);

export const boolean: Field<boolean> = field('a boolean', (v): v is boolean => typeof v === 'boolean');

/**
 * Paths cross a process boundary: the daemon's working directory is not the client's. The bound
 * is the kernel's PATH_MAX, in bytes of UTF-8; a longer absolute path is told as too long, not as
 * not absolute.
 */
export const absolutePath: Field<string> = {
  ...field(
    'an absolute path',
    (v): v is string => typeof v === 'string' && v.length > 0 && Buffer.byteLength(v) <= MAX_STRING_LENGTH && isAbsolute(v) && !v.includes('\0'),
  ),
  refusal: (v) => typeof v === 'string' && Buffer.byteLength(v) > MAX_STRING_LENGTH && isAbsolute(v)
    ? `at most ${MAX_STRING_LENGTH} bytes long (PATH_MAX), got an absolute path of ${Buffer.byteLength(v)} bytes: the path is too long`
    : null,
};

export function integer(min: number, max: number = Number.MAX_SAFE_INTEGER): Field<number> {
  return field(`an integer from ${min} to ${max}`, (v): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max);
}

export function oneOf<const V extends readonly string[]>(...values: V): Field<V[number]> {
  return field(`one of ${values.map((v) => JSON.stringify(v)).join(', ')}`, (v): v is V[number] => typeof v === 'string' && values.includes(v));
}

export function optional<T>(f: Field<T>): Field<T, true> {
  return { expected: f.expected, optional: true, accepts: f.accepts, ...(f.refusal ? { refusal: f.refusal } : {}) };
}

/**
 * Checks params against a shape and returns a fresh object holding only the declared keys. A nil
 * value counts as absent, since many msgpack encoders cannot omit a key.
 */
export function validateParams<S extends Shape>(shape: S, params: Params, where = 'params'): ParamsOf<S> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(params)) {
    if (!Object.prototype.hasOwnProperty.call(shape, key)) {
      const known = Object.keys(shape);
      const hint = known.length === 0 ? 'this method takes no params' : `known: ${known.join(', ')}`;
      throw new BlocksnapError('InvalidArgument', `${where}.${key} must be absent (${hint})`, { param: key });
    }
  }
  for (const [key, f] of Object.entries(shape)) {
    const value = Object.prototype.hasOwnProperty.call(params, key) ? params[key] : undefined;
    if (value === undefined || value === null) {
      if (f.optional) continue;
      throw new BlocksnapError('InvalidArgument', `${where}.${key} must be ${f.expected}`, { param: key });
    }
    if (!f.accepts(value)) {
      const refusal = f.refusal?.(value) ?? null;
      if (refusal !== null) throw new BlocksnapError('InvalidArgument', `${where}.${key} must be ${refusal}`, { param: key });
      throw new BlocksnapError('InvalidArgument', `${where}.${key} must be ${f.expected}, got ${shown(value)}`, { param: key });
    }
    out[key] = value;
  }
  return out as ParamsOf<S>;
}

/** What a refused param was: its type, and a number's value (a type alone does not say why 1000 is not a block size). */
/** What was sent, as far as it helps: a number's value, a short string itself, a long one's length. */
function shown(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'bigint') return `${String(value)} (${describeType(value)})`;
  if (typeof value === 'string') {
    if (value.length === 0) return 'an empty string';
    const n = charCount(value);
    return n <= SHOWN_STRING_MAX ? `${quoted(value)} (a string)` : `a string of ${n} characters`;
  }
  return describeType(value);
}

/** Longest string a refusal quotes, in characters. */
const SHOWN_STRING_MAX = 64;

/** JSON-quoted, DEL and the C1 controls (which JSON leaves raw) escaped too: no control character reaches a client's terminal. */
function quoted(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
