import t from 'tap';
import { expiredSnapshots, resolveRetention, type Dated } from '../../src/engine/retention';

const H = 3_600_000;
const D = 24 * H;

/** Snapshots at the given UTC instants, named by their time so expectations read as times. */
function at(...isos: string[]): Dated[] {
  return isos.map((iso) => ({ id: iso, createdAt: new Date(iso).toISOString() }));
}

function every(startIso: string, stepMs: number, n: number): Dated[] {
  const start = Date.parse(startIso);
  return Array.from({ length: n }, (_, i) => {
    const iso = new Date(start + i * stepMs).toISOString();
    return { id: iso, createdAt: iso };
  });
}

t.test('by days: older than D days goes, exactly D days goes, younger stays; -1 keeps all', async (t) => {
  const now = Date.parse('2026-11-22T02:00:00Z');
  const snaps = every('2026-11-12T02:00:00Z', D, 11); // 12th .. 22nd, 02:00
  const r7 = resolveRetention({ days: 7 });
  const expired = expiredSnapshots(snaps, r7, now, 'UTC');
  t.same(expired, snaps.slice(0, 4).map((s) => s.id), '12th..15th expire: the 15th is exactly 7 days old');
  t.equal(snaps.length - expired.length, 7, 'seven daily snapshots remain');
  t.same(expiredSnapshots(snaps, resolveRetention({ days: -1 }), now, 'UTC'), [], 'forever');
  t.same(expiredSnapshots(snaps, resolveRetention(undefined), now, 'UTC'), [], 'the default is forever');
  t.same(expiredSnapshots(snaps, r7, now + 12 * H, 'UTC'), snaps.slice(0, 4).map((s) => s.id), 'half a day later, the same set');
  t.same(expiredSnapshots(snaps, r7, now + D, 'UTC'), snaps.slice(0, 5).map((s) => s.id), 'a day later, one more');
});

t.test('keep-last keeps the N newest', async (t) => {
  const snaps = every('2026-11-22T00:00:00Z', H, 10);
  const expired = expiredSnapshots(snaps, resolveRetention({ keepLast: 3 }), Date.parse('2026-11-23T00:00:00Z'), 'UTC');
  t.same(expired, snaps.slice(0, 7).map((s) => s.id));
});

t.test('keep-daily keeps the newest snapshot of each of the N newest days', async (t) => {
  // Hourly snapshots over three days: 20th 22:00 .. 22nd 03:00.
  const snaps = every('2026-11-20T22:00:00Z', H, 30);
  const kept = (rule: Parameters<typeof resolveRetention>[0], tz = 'UTC'): string[] => {
    const gone = new Set(expiredSnapshots(snaps, resolveRetention(rule), Date.parse('2026-11-22T04:00:00Z'), tz));
    return snaps.filter((s) => !gone.has(s.id)).map((s) => s.id);
  };
  t.same(kept({ keepDaily: 2 }), ['2026-11-21T23:00:00.000Z', '2026-11-22T03:00:00.000Z'], 'the last of the 21st and of the 22nd');
  t.same(kept({ keepDaily: 5 }), ['2026-11-20T23:00:00.000Z', '2026-11-21T23:00:00.000Z', '2026-11-22T03:00:00.000Z'], 'only three days exist');
  // In Tokyo (UTC+9) the day ends at 15:00 UTC.
  t.same(kept({ keepDaily: 2 }, 'Asia/Tokyo'), ['2026-11-21T14:00:00.000Z', '2026-11-22T03:00:00.000Z'], 'days are the zone\'s days');
});

t.test('rules combine in order, each counting only periods not already covered (PBS semantics)', async (t) => {
  const snaps = every('2026-11-18T12:00:00Z', 12 * H, 10); // 18th 12:00 .. 23rd 00:00, two a day
  const gone = new Set(expiredSnapshots(snaps, resolveRetention({ keepLast: 3, keepDaily: 2 }), Date.parse('2026-11-23T01:00:00Z'), 'UTC'));
  const kept = snaps.filter((s) => !gone.has(s.id)).map((s) => s.id);
  // keep-last 3: 23rd 00:00, 22nd 12:00, 22nd 00:00 (covering the 23rd and the 22nd);
  // keep-daily 2 then takes the newest of the 21st and of the 20th.
  t.same(kept, ['2026-11-20T12:00:00.000Z', '2026-11-21T12:00:00.000Z', '2026-11-22T00:00:00.000Z', '2026-11-22T12:00:00.000Z', '2026-11-23T00:00:00.000Z']);
});

t.test('a period covered only in part by an earlier rule counts as covered: its older snapshots are not kept again', async (t) => {
  const snaps = every('2026-11-19T00:00:00Z', 8 * H, 12); // 19th 00:00 .. 22nd 16:00, three a day
  const gone = new Set(expiredSnapshots(snaps, resolveRetention({ keepLast: 2, keepDaily: 2 }), Date.parse('2026-11-22T17:00:00Z'), 'UTC'));
  const kept = snaps.filter((s) => !gone.has(s.id)).map((s) => s.id);
  // keep-last 2 keeps 22nd 16:00 and 08:00, covering the 22nd though its 00:00 is left; keep-daily 2
  // then skips that 00:00 and takes the newest of the 21st and of the 20th.
  t.same(kept, ['2026-11-20T16:00:00.000Z', '2026-11-21T16:00:00.000Z', '2026-11-22T08:00:00.000Z', '2026-11-22T16:00:00.000Z']);
});

t.test('weekly, monthly and yearly buckets', async (t) => {
  const snaps = at(
    '2024-12-31T10:00:00Z', // ISO week 2025-W1 (a Tuesday), year 2024
    '2025-06-15T10:00:00Z', '2025-06-30T10:00:00Z',
    '2026-01-05T10:00:00Z', '2026-01-07T10:00:00Z', // same ISO week 2026-W2
    '2026-11-20T10:00:00Z',
  );
  const now = Date.parse('2026-11-22T00:00:00Z');
  const kept = (rule: Parameters<typeof resolveRetention>[0]): string[] => {
    const gone = new Set(expiredSnapshots(snaps, resolveRetention(rule), now, 'UTC'));
    return snaps.filter((s) => !gone.has(s.id)).map((s) => s.id.slice(0, 10));
  };
  t.same(kept({ keepWeekly: 3 }), ['2025-06-30', '2026-01-07', '2026-11-20'], 'newest of three ISO weeks');
  t.same(kept({ keepMonthly: 3 }), ['2025-06-30', '2026-01-07', '2026-11-20']);
  t.same(kept({ keepYearly: 10 }), ['2024-12-31', '2025-06-30', '2026-11-20'], 'newest of each calendar year');
});

t.test('invalid retentions are refused with InvalidArgument', async (t) => {
  t.throws(() => resolveRetention({ days: 7, keepLast: 3 }), { code: 'InvalidArgument' }, 'days and keep rules together');
  t.throws(() => resolveRetention({ days: 0 }), { code: 'InvalidArgument' });
  t.throws(() => resolveRetention({ days: -2 }), { code: 'InvalidArgument' });
  t.throws(() => resolveRetention({ keepLast: 0 }), { code: 'InvalidArgument' }, 'keeps nothing');
  t.throws(() => resolveRetention({ keepDaily: 1.5 }), { code: 'InvalidArgument' });
  t.same(resolveRetention({ keepDaily: 7 }, resolveRetention({ days: 3 })).days, null, 'keep rules replace days on update');
  t.same(resolveRetention({}, resolveRetention({ days: 3 })).days, 3, 'nothing given keeps the old retention');
});
