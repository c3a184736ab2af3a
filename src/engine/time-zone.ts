/**
 * Wall-clock time in an IANA time zone, from node's ICU (Intl), with no table of our own. Policies
 * name the hours and weekdays they run at in a zone; retention buckets (one per day, week, ...)
 * are that zone's calendar days, as an operator reading `policy show` would count them.
 */
import { BlocksnapError } from '../errors';

export interface WallClock {
  year: number;
  month: number;   // 1-12
  day: number;     // 1-31
  hour: number;    // 0-23
  minute: number;
  second: number;
  weekday: number; // 1 Monday - 7 Sunday (ISO)
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
      hour: 'numeric', minute: 'numeric', second: 'numeric', weekday: 'short',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

const WEEKDAYS: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/**
 * Accepts `UTC` and IANA names (`Europe/Berlin`); returns the name as given, in its canonical case
 * where ICU knows that name itself. ICU resolves some current names to older ones
 * (`Asia/Kolkata` → `Asia/Calcutta`, `Europe/Kyiv` → `Europe/Kiev`): storing what it resolves to
 * would show the operator a zone they did not type. Intl accepts the given name for the same
 * zone, so it keeps working as given.
 */
export function validateTimeZone(tz: unknown): string {
  if (typeof tz !== 'string' || tz.length === 0 || tz.length > 64) {
    throw new BlocksnapError('InvalidArgument', `time zone must be an IANA name such as "UTC" or "Europe/Berlin", not ${JSON.stringify(tz)}`);
  }
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    throw new BlocksnapError('InvalidArgument', `unknown time zone ${JSON.stringify(tz)}: use an IANA name such as "UTC" or "Europe/Berlin"`);
  }
  return resolved.toLowerCase() === tz.toLowerCase() ? resolved : tz;
}

/** The zone's wall clock at an instant. */
export function wallClock(instantMs: number, timeZone: string): WallClock {
  const parts: Record<string, string> = {};
  for (const p of formatter(timeZone).formatToParts(new Date(instantMs))) parts[p.type] = p.value;
  return {
    year: Number(parts.year), month: Number(parts.month), day: Number(parts.day),
    hour: Number(parts.hour), minute: Number(parts.minute), second: Number(parts.second),
    weekday: WEEKDAYS[parts.weekday!]!,
  };
}

/** The zone's offset from UTC at an instant, in ms (UTC+2 → +7,200,000). */
function offsetAt(instantMs: number, timeZone: string): number {
  const w = wallClock(instantMs, timeZone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - Math.floor(instantMs / 1000) * 1000;
}

const HOUR_MS = 3_600_000;

/**
 * The instant the zone's clocks show year-month-day hour:00. A time that occurs twice (clocks
 * set back) is its first occurrence; a time that does not occur (clocks set forward across it)
 * is the instant of the change, when the clocks jump past it, so a job due then still runs once.
 */
export function zonedInstant(year: number, month: number, day: number, hour: number, timeZone: string): number {
  const wanted = Date.UTC(year, month - 1, day, hour);
  // Offsets in force a while before and after: every transition near `wanted` lies between them.
  const before = offsetAt(wanted - 14 * HOUR_MS, timeZone);
  const after = offsetAt(wanted + 14 * HOUR_MS, timeZone);
  const matches = [...new Set([before, after])]
    .map((o) => wanted - o)
    .filter((t) => {
      const w = wallClock(t, timeZone);
      return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) === wanted;
    });
  if (matches.length > 0) return Math.min(...matches);
  return wanted - before;
}

/** The calendar date `days` after the given one (no zone involved: date arithmetic only). */
export function addDays(year: number, month: number, day: number, days: number): { year: number; month: number; day: number } {
  const d = new Date(Date.UTC(year, month - 1, day + days));
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}
