/**
 * Human output: sizes in IEC units, relative times, aligned tables. Pure functions, so the
 * output is testable without a terminal and stable for the same input.
 */
import { CONTROL_RE } from '../engine/text-fields';
import { formatBytes } from '../size-text';

export { formatBytes };

/** "1 block", "0 blocks", "64 blocks". */
export function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/** A rate in IEC units per second. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** 59 s → "0:59", 3725 s → "1:02:05". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago"; older than 30 days: the date. */
export function relativeTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (iso === null || iso === undefined || iso === '') return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  if (s < 0) return s > -60 ? 'just now' : iso.slice(0, 10);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 24) return `${h} h ago`;
  const days = Math.floor(h / 24);
  if (days <= 30) return `${days} day${days === 1 ? '' : 's'} ago`;
  return iso.slice(0, 10);
}

export type Align = 'left' | 'right';

export interface Column<T> {
  header: string;
  value(row: T): string;
  align?: Align;
}

const CONTROL_CHARS = new RegExp(CONTROL_RE.source, 'g');

/**
 * `s` with its control characters written out (`\n`, `\x1b`): text from the daemon may hold what
 * this build refuses but an older one took (a description, a path, a message quoting one), and a
 * terminal must not act on it, nor a line break split one line of output.
 */
export function printable(s: string): string {
  return s.replace(CONTROL_CHARS, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

// Every control character but the line break and the tab that lay out human output.
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * Human output as a whole, written out where a terminal would act on it (escape sequences): the
 * last guard for text no view passed through `printable` (an error message quoting a path in a
 * line of a policy's history, say). Line breaks stay, as the views put them there.
 */
export function terminalSafe(s: string): string {
  return s.replace(UNSAFE_CHARS, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Columns separated by two spaces, headers in capitals; the last column is not padded. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => printable(c.value(r))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]): string =>
    values
      .map((v, i) => {
        const last = i === values.length - 1;
        if (columns[i]!.align === 'right') return v.padStart(widths[i]!);
        return last ? v : v.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n');
}

/** "key: value" lines with the values aligned. */
export function details(pairs: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${printable(v)}`).join('\n');
}

export function percent(done: number, total: number): string {
  if (total <= 0) return '-';
  return `${Math.min(100, Math.floor((done / total) * 100))}%`;
}
