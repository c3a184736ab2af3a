/** Parsers of the compact argument forms of the policy, group and tag commands, and checks of option pairs. */
import { InvalidArgumentError, type Command } from 'commander';
import { BlocksnapError } from '../errors';
import { validateTagKey } from '../engine/tags';

/** "2,14", "0-23", "1-5,7" → sorted distinct integers within [min, max]. */
export function parseIntegerList(text: string, min: number, max: number): number[] {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new InvalidArgumentError(`use numbers and ranges such as 2,14 or ${min}-${max}`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < min || to > max || from > to) throw new InvalidArgumentError(`every value must be from ${min} to ${max}, ranges low-high`);
    for (let i = from; i <= to; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/** An integer option value, negative allowed where min < 0 (--retention-days -1). */
export function integerOption(min: number, max = Number.MAX_SAFE_INTEGER): (text: string) => number {
  return (text) => {
    if (!/^-?\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      throw new InvalidArgumentError(max === Number.MAX_SAFE_INTEGER ? `must be an integer of ${min} or more` : `must be an integer from ${min} to ${max}`);
    }
    return Number(text);
  };
}

/**
 * "k=v" arguments → a tag map (the value may be empty and may contain "="). Keys are checked here,
 * before connecting: on a plain object `__proto__=x` would vanish without a word, and the wire
 * codec renames that key, so the daemon could not name it in its refusal. A key given twice is
 * refused too: keeping only the last would drop the other without a word (for `list --tag`, one
 * of two conditions that were both to hold).
 */
export function parseTags(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new InvalidArgumentError(`tag ${JSON.stringify(p)} must have the form key=value`);
    const key = validateTagKey(p.slice(0, i));
    if (Object.hasOwn(out, key)) throw new BlocksnapError('InvalidArgument', `tag key ${key} is given more than once`);
    out[key] = p.slice(i + 1);
  }
  return out;
}

/** Collects a repeatable option. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Options that switch one thing on and off under two names (a --x / --no-x pair is found by its names). */
const ON_OFF: ReadonlyArray<readonly [string, string]> = [['--enable', '--disable']];

/**
 * The pairs of options of `cmd` that contradict each other: every --x with its --no-x, and the
 * on/off pairs of ON_OFF it has.
 */
export function contradictingPairs(cmd: Command): Array<[string, string]> {
  const longs = new Set(cmd.options.map((o) => o.long).filter((l): l is string => l !== undefined));
  const pairs: Array<[string, string]> = [];
  for (const long of longs) {
    if (long.startsWith('--no-') && longs.has(`--${long.slice(5)}`)) pairs.push([`--${long.slice(5)}`, long]);
  }
  for (const [on, off] of ON_OFF) if (longs.has(on) && longs.has(off)) pairs.push([on, off]);
  return pairs;
}

/**
 * Refuses (InvalidArgument, before connecting) a command line that gives both options of a pair
 * that contradict each other (contradictingPairs): left to commander, the last one would win and
 * the other be dropped without a word, and with it what it asked for (a remote that must exist).
 */
export function refuseContradictions(cmd: Command): void {
  const pairs = contradictingPairs(cmd);
  if (pairs.length === 0) return;
  const given = new Set<string>();
  for (const flag of new Set(pairs.flat())) cmd.on(`option:${flag.slice(2)}`, () => given.add(flag));
  cmd.hook('preAction', () => {
    const both = pairs.find(([a, b]) => given.has(a) && given.has(b));
    if (both) throw new BlocksnapError('InvalidArgument', `${both[0]} and ${both[1]} exclude each other`);
  });
}
