/**
 * Free text an operator gives (descriptions, tag values). Lengths are counted in characters (code
 * points: an emoji is one, as the messages say), and control characters are refused: a terminal
 * acts on escape sequences, and a line break or tab would break the CLI's `key: value` lines, for
 * every operator who later shows the object.
 */
import { BlocksnapError } from '../errors';

export const DESCRIPTION_MAX = 1024;

// C0, DEL and C1: C1 holds the one-byte CSI (U+009B) some terminals take as ESC [.
// eslint-disable-next-line no-control-regex
export const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/** Characters (code points) in `s`. */
export function charCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export function validateDescription(v: unknown): string {
  if (typeof v !== 'string' || charCount(v) > DESCRIPTION_MAX || CONTROL_RE.test(v)) {
    throw new BlocksnapError('InvalidArgument',
      `description must be a string of at most ${DESCRIPTION_MAX} characters without control characters (line breaks, tabs, escape sequences)`);
  }
  return v;
}
