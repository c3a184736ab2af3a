/**
 * Due times of a policy schedule: every listed hour (minute 0) of every listed ISO weekday, on the
 * wall clock of the schedule's time zone. UTC and fixed-offset zones are plain arithmetic; in a
 * zone with daylight saving an hour the clocks skip runs once at the moment they jump, and an
 * hour they repeat runs once, at its first occurrence (time-zone.ts).
 */
import { addDays, wallClock, zonedInstant } from '../engine/time-zone';

export interface Schedule {
  hours: number[];
  weekdays: number[];
  timeZone: string;
}

/** Far enough to cross any week (weekday lists are never empty) plus a DST change. */
const SEARCH_DAYS = 9;

function dueTimesOfDay(s: Schedule, year: number, month: number, day: number): number[] {
  const weekday = new Date(Date.UTC(year, month - 1, day)).getUTCDay() || 7;
  if (!s.weekdays.includes(weekday)) return [];
  return s.hours.map((h) => zonedInstant(year, month, day, h, s.timeZone));
}

/** The first due time strictly after `after`. */
export function nextDue(s: Schedule, after: Date): Date {
  const t = after.getTime();
  const w = wallClock(t, s.timeZone);
  for (let i = -1; i <= SEARCH_DAYS; i++) {
    const d = addDays(w.year, w.month, w.day, i);
    const hit = dueTimesOfDay(s, d.year, d.month, d.day).filter((x) => x > t).sort((a, b) => a - b)[0];
    if (hit !== undefined) return new Date(hit);
  }
  throw new Error(`no due time within ${SEARCH_DAYS} days of ${after.toISOString()} for hours ${s.hours} weekdays ${s.weekdays}`);
}

/** The latest due time at or before `at`. */
export function previousDue(s: Schedule, at: Date): Date {
  const t = at.getTime();
  const w = wallClock(t, s.timeZone);
  for (let i = 1; i >= -SEARCH_DAYS; i--) {
    const d = addDays(w.year, w.month, w.day, i);
    const hits = dueTimesOfDay(s, d.year, d.month, d.day).filter((x) => x <= t);
    if (hits.length > 0) return new Date(Math.max(...hits));
  }
  throw new Error(`no due time within ${SEARCH_DAYS} days before ${at.toISOString()} for hours ${s.hours} weekdays ${s.weekdays}`);
}
