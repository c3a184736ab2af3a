import t from 'tap';
import { nextDue, previousDue } from '../../src/scheduler/due-times';

const iso = (d: Date): string => d.toISOString();

t.test('UTC: next and previous due time on the listed hours', async (t) => {
  const s = { hours: [2, 14], weekdays: [1, 2, 3, 4, 5, 6, 7], timeZone: 'UTC' };
  t.equal(iso(nextDue(s, new Date('2026-11-22T01:59:59Z'))), '2026-11-22T02:00:00.000Z');
  t.equal(iso(nextDue(s, new Date('2026-11-22T02:00:00Z'))), '2026-11-22T14:00:00.000Z', 'strictly after');
  t.equal(iso(nextDue(s, new Date('2026-11-22T14:00:01Z'))), '2026-11-23T02:00:00.000Z', 'rolls to the next day');
  t.equal(iso(previousDue(s, new Date('2026-11-22T14:00:00Z'))), '2026-11-22T14:00:00.000Z', 'at or before');
  t.equal(iso(previousDue(s, new Date('2026-11-22T01:00:00Z'))), '2026-11-21T14:00:00.000Z');
});

t.test('weekdays: ISO numbering, Monday 1 to Sunday 7, across the week end', async (t) => {
  // 2026-11-22 is a Sunday.
  const workdays = { hours: [9], weekdays: [1, 2, 3, 4, 5], timeZone: 'UTC' };
  t.equal(iso(nextDue(workdays, new Date('2026-11-20T10:00:00Z'))), '2026-11-23T09:00:00.000Z', 'Friday after 9 → Monday');
  t.equal(iso(previousDue(workdays, new Date('2026-11-22T12:00:00Z'))), '2026-11-20T09:00:00.000Z', 'Sunday → last Friday');
  const sunday = { hours: [0], weekdays: [7], timeZone: 'UTC' };
  t.equal(iso(nextDue(sunday, new Date('2026-11-22T00:00:00Z'))), '2026-11-29T00:00:00.000Z', 'a week later');
  t.equal(iso(previousDue(sunday, new Date('2026-11-28T23:59:59Z'))), '2026-11-22T00:00:00.000Z');
});

t.test('a local zone without DST: Asia/Shanghai is UTC+8 all year', async (t) => {
  const s = { hours: [2], weekdays: [1, 2, 3, 4, 5, 6, 7], timeZone: 'Asia/Shanghai' };
  t.equal(iso(nextDue(s, new Date('2026-06-30T12:00:00Z'))), '2026-06-30T18:00:00.000Z', '02:00 +08 is 18:00 UTC the day before');
  t.equal(iso(nextDue(s, new Date('2026-12-31T18:00:00Z'))), '2027-01-01T18:00:00.000Z');
  // Monday 02:00 in Shanghai is Sunday 18:00 UTC: the weekday is the zone's, not UTC's.
  const monday = { hours: [2], weekdays: [1], timeZone: 'Asia/Shanghai' };
  t.equal(iso(nextDue(monday, new Date('2026-11-22T00:00:00Z'))), '2026-11-22T18:00:00.000Z');
});

t.test('a local zone with DST: Europe/Berlin keeps the wall-clock hour', async (t) => {
  const s = { hours: [1, 2, 3], weekdays: [1, 2, 3, 4, 5, 6, 7], timeZone: 'Europe/Berlin' };
  t.equal(iso(nextDue({ ...s, hours: [12] }, new Date('2026-01-10T00:00:00Z'))), '2026-01-10T11:00:00.000Z', 'winter: UTC+1');
  t.equal(iso(nextDue({ ...s, hours: [12] }, new Date('2026-07-10T00:00:00Z'))), '2026-07-10T10:00:00.000Z', 'summer: UTC+2');
  // 2026-03-29: clocks jump 02:00 → 03:00. 02:00 does not exist; it runs once, at the jump.
  const spring = [nextDue(s, new Date('2026-03-28T23:30:00Z'))];
  while (spring.length < 3) spring.push(nextDue(s, spring[spring.length - 1]!));
  t.same(spring.map(iso), ['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T23:00:00.000Z'],
    '01:00 CET, then 02:00 and 03:00 share the instant of the jump (01:00 UTC), then 01:00 CEST the next night');
  // 2026-10-25: clocks fall back 03:00 → 02:00. 02:00 happens twice; it runs once, the first time.
  const autumn = [nextDue(s, new Date('2026-10-24T22:30:00Z'))];
  while (autumn.length < 4) autumn.push(nextDue(s, autumn[autumn.length - 1]!));
  t.same(autumn.map(iso), ['2026-10-24T23:00:00.000Z', '2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-26T00:00:00.000Z'],
    '01:00 CEST, 02:00 CEST (first occurrence), 03:00 CET');
});

t.test('America/New_York: previous due across a DST change and a weekday filter', async (t) => {
  const s = { hours: [23], weekdays: [6], timeZone: 'America/New_York' };
  // Saturday 2026-03-07 23:00 EST = 2026-03-08T04:00Z; DST starts Sunday 2026-03-08.
  t.equal(iso(previousDue(s, new Date('2026-03-12T00:00:00Z'))), '2026-03-08T04:00:00.000Z');
  t.equal(iso(nextDue(s, new Date('2026-03-08T04:00:00Z'))), '2026-03-15T03:00:00.000Z', 'next Saturday 23:00 EDT');
});
