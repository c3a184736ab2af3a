/**
 * Retention of a policy's automatic snapshots, in one of two styles an operator knows:
 *
 * - by age, as the cloud services do: `days` = D keeps automatic snapshots younger than D days
 *   (a snapshot exactly D days old goes), -1 keeps them forever (the quota still caps them);
 * - by keep rules, as Proxmox Backup Server and restic do: keep-last N keeps the N newest;
 *   keep-hourly/daily/weekly/monthly/yearly N keep the newest snapshot of each of the N newest
 *   hours/days/ISO weeks/months/years that have one. Rules apply in that order and a period
 *   already covered by a snapshot an earlier rule kept is not counted again (PBS's semantics:
 *   keep-last 3 plus keep-daily 2 keeps the last three and the newest of two *earlier* days).
 *   A snapshot kept by any rule stays.
 *
 * Periods are calendar periods in the policy's time zone. Only the automatic snapshots of one
 * disk are ever passed in: manual snapshots and group members are never expired by a policy.
 * Pure functions of their inputs (the time comes from the caller's clock), so tests need no clock.
 */
import { BlocksnapError } from '../errors';
import { wallClock } from './time-zone';

export interface Retention {
  /** Age limit in days, -1 = forever; null when the keep rules decide. */
  days: number | null;
  keepLast: number;
  keepHourly: number;
  keepDaily: number;
  keepWeekly: number;
  keepMonthly: number;
  keepYearly: number;
}

export type RetentionInput = Partial<Retention>;

export const KEEP_RULES = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;
export type KeepRule = (typeof KEEP_RULES)[number];

export const RETENTION_DAYS_MAX = 65_536;
export const KEEP_MAX = 65_536;
const DAY_MS = 86_400_000;

export const KEEP_FOREVER: Readonly<Retention> = { days: -1, keepLast: 0, keepHourly: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepYearly: 0 };

/**
 * A complete retention from what the operator gave: days, or keep rules, never both. Nothing
 * given keeps automatic snapshots until the quota pushes the oldest out.
 */
export function resolveRetention(r: RetentionInput | undefined, base: Retention = KEEP_FOREVER): Retention {
  const given = r ?? {};
  const keepGiven = KEEP_RULES.filter((k) => given[k] !== undefined);
  if (given.days !== undefined && given.days !== null && keepGiven.length > 0) {
    throw new BlocksnapError('InvalidArgument', 'give retention either in days or as keep rules, not both');
  }
  if (given.days !== undefined && given.days !== null) {
    const d = given.days;
    if (!Number.isSafeInteger(d) || (d !== -1 && (d < 1 || d > RETENTION_DAYS_MAX))) {
      throw new BlocksnapError('InvalidArgument', `retention days must be -1 (forever) or an integer from 1 to ${RETENTION_DAYS_MAX}, not ${String(d)}`);
    }
    return { ...KEEP_FOREVER, days: d };
  }
  if (keepGiven.length === 0) return { ...base };
  const out: Retention = { ...KEEP_FOREVER, days: null };
  for (const k of keepGiven) {
    const v = given[k]!;
    if (!Number.isSafeInteger(v) || v < 0 || v > KEEP_MAX) {
      throw new BlocksnapError('InvalidArgument', `${k} must be an integer from 0 to ${KEEP_MAX}, not ${String(v)}`);
    }
    out[k] = v;
  }
  if (KEEP_RULES.every((k) => out[k] === 0)) {
    throw new BlocksnapError('InvalidArgument', 'keep rules that keep nothing would delete every automatic snapshot; give at least one rule above 0');
  }
  return out;
}

export interface Dated { id: string; createdAt: string }

function isoWeek(year: number, month: number, day: number): string {
  const d = new Date(Date.UTC(year, month - 1, day));
  const weekday = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const weekYear = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(weekYear, 0, 1)) / DAY_MS + 1) / 7);
  return `${weekYear}-W${week}`;
}

function periodKey(rule: KeepRule, s: Dated, timeZone: string): string {
  if (rule === 'keepLast') return s.id;
  const w = wallClock(Date.parse(s.createdAt), timeZone);
  switch (rule) {
    case 'keepHourly': return `${w.year}-${w.month}-${w.day}T${w.hour}`;
    case 'keepDaily': return `${w.year}-${w.month}-${w.day}`;
    case 'keepWeekly': return isoWeek(w.year, w.month, w.day);
    case 'keepMonthly': return `${w.year}-${w.month}`;
    case 'keepYearly': return `${w.year}`;
  }
}

/** The ids of `snaps` that retention deletes at `nowMs`, oldest first. */
export function expiredSnapshots(snaps: Dated[], r: Retention, nowMs: number, timeZone: string): string[] {
  const oldestFirst = [...snaps].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  if (r.days !== null) {
    if (r.days === -1) return [];
    const cutoff = nowMs - r.days * DAY_MS;
    return oldestFirst.filter((s) => Date.parse(s.createdAt) <= cutoff).map((s) => s.id);
  }
  const newestFirst = [...oldestFirst].reverse();
  const kept = new Set<string>();
  const decided = new Set<string>();
  for (const rule of KEEP_RULES) {
    const keep = r[rule];
    if (keep === 0) continue;
    const covered = new Set(newestFirst.filter((s) => kept.has(s.id)).map((s) => periodKey(rule, s, timeZone)));
    const periods = new Set<string>();
    for (const s of newestFirst) {
      if (decided.has(s.id)) continue;
      const key = periodKey(rule, s, timeZone);
      if (covered.has(key)) continue;
      if (periods.has(key)) {
        decided.add(s.id); // an older snapshot of a period this rule already kept: this rule drops it
        continue;
      }
      if (periods.size >= keep) break;
      periods.add(key);
      kept.add(s.id);
      decided.add(s.id);
    }
  }
  return oldestFirst.filter((s) => !kept.has(s.id)).map((s) => s.id);
}
