/**
 * Strings on the NBD wire: every one (export names, descriptions, error messages) MUST be at
 * most 4096 bytes of UTF-8, and clients enforce it (libnbd marks a handle dead on a longer one).
 * Messages quote what the client sent, which may be as long as an option allows, so every string
 * the server sends goes through wireString.
 */
import { NBD_MAX_STRING } from './constants';

/** `text` as UTF-8, cut at a character boundary to at most `max` bytes. */
export function wireString(text: string, max = NBD_MAX_STRING): Buffer {
  const b = Buffer.from(text, 'utf8');
  if (b.length <= max) return b;
  let end = max;
  // A continuation byte (10xxxxxx) at the cut means the cut is inside a character.
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

/** Longest part of a client-supplied name quoted in a message. */
const QUOTED_CHARS = 256;

/** A client-supplied name for a message: JSON-quoted (control bytes escaped), long ones cut. */
export function quoteName(name: string): string {
  if (name.length <= QUOTED_CHARS) return JSON.stringify(name);
  return `${JSON.stringify(name.slice(0, QUOTED_CHARS))}… (${Buffer.byteLength(name, 'utf8')} bytes)`;
}
