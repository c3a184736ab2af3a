/** Human renderings of policies, policy runs and snapshot groups. */
import type { PolicyEvent } from '../catalog/model-records';
import type { Group, GroupRollback } from '../engine/groups';
import type { Policy, PolicyRunResult } from '../engine/policies';
import type { Retention } from '../engine/retention';
import { details, relativeTime, table } from './format';

export type ServedPolicy = Policy & { nextRunAt: string | null };

const KEEP_LABELS: Array<[keyof Retention, string]> = [
  ['keepLast', 'last'], ['keepHourly', 'hourly'], ['keepDaily', 'daily'], ['keepWeekly', 'weekly'], ['keepMonthly', 'monthly'], ['keepYearly', 'yearly'],
];

export function retentionText(r: Retention): string {
  if (r.days === -1) return 'forever (up to the quota)';
  if (r.days !== null) return `${r.days} day${r.days === 1 ? '' : 's'}`;
  return KEEP_LABELS.filter(([k]) => (r[k] as number) > 0).map(([k, label]) => `${label} ${r[k]}`).join(', ');
}

function ranges(values: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < values.length; i++) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j]! + 1) j++;
    out.push(j > i + 1 ? `${values[i]}-${values[j]}` : values.slice(i, j + 1).join(','));
    i = j;
  }
  return out.join(',');
}

export function scheduleText(p: Policy): string {
  const days = p.weekdays.length === 7 ? 'every day' : `weekdays ${ranges(p.weekdays)}`;
  return `hours ${ranges(p.hours)}, ${days} (${p.timeZone})`;
}

export function policyTable(policies: ServedPolicy[]): string {
  if (policies.length === 0) return 'No policies. Create one with: blocksnap policy create --name daily --hours 2';
  return table(policies, [
    { header: 'id', value: (p) => p.id },
    { header: 'name', value: (p) => p.name },
    { header: 'schedule', value: scheduleText },
    { header: 'retention', value: (p) => retentionText(p.retention) },
    { header: 'disks', value: (p) => String(p.diskIds.length), align: 'right' },
    { header: 'next run', value: (p) => (p.nextRunAt ? p.nextRunAt : 'disabled') },
  ]);
}

function eventText(e: PolicyEvent): string {
  // Whatever the outcome: a run that deleted snapshots says so.
  const expired = e.expired.length > 0 ? `, expired ${e.expired.length}` : '';
  const what = e.outcome === 'created' ? `created ${e.snapshotId}${expired}` : `${e.outcome}${e.error ? `: ${e.error.message} [${e.error.code}]` : ''}${expired}`;
  const r = e.replication;
  const replicated = r ? `; replication to ${r.remote} ${r.state}${r.error ? `: ${r.error.message} [${r.error.code}]` : ''}` : '';
  return `${e.at} ${e.diskId} ${what}${replicated}`;
}

export function policyDetails(p: ServedPolicy): string {
  const pairs: Array<[string, string]> = [
    ['id', p.id],
    ['name', p.name],
    ['schedule', scheduleText(p)],
    ['retention', retentionText(p.retention)],
    ['enabled', p.enabled ? 'yes' : 'no'],
    ['replicate', p.replicateTo ? `to ${p.replicateTo} after each run` : '-'],
    ['disks', p.diskIds.length > 0 ? p.diskIds.join(', ') : '-'],
    ['next run', p.nextRunAt ?? '-'],
    ['created', `${p.createdAt} (${relativeTime(p.createdAt)})`],
  ];
  if (p.description !== '') pairs.splice(2, 0, ['description', p.description]);
  const recent = p.history.slice(-10).reverse();
  return details(pairs) + (recent.length > 0 ? `\nrecent runs:\n${recent.map((e) => `  ${eventText(e)}`).join('\n')}` : '');
}

export function policyRunView(r: PolicyRunResult): string {
  if (r.disks.length === 0) return `Policy ${r.policyId} has no disks bound; nothing to do.`;
  return r.disks.map(eventText).join('\n');
}

export function groupTable(groups: Group[]): string {
  if (groups.length === 0) return 'No groups.';
  return table(groups, [
    { header: 'id', value: (g) => g.id },
    { header: 'name', value: (g) => g.name },
    { header: 'status', value: (g) => g.status },
    { header: 'disks', value: (g) => String(g.diskIds.length), align: 'right' },
    { header: 'created', value: (g) => relativeTime(g.createdAt) },
  ]);
}

const GROUP_CONSISTENCY_TEXT: Record<string, string> = {
  'point-in-time': 'point-in-time (copy-on-write disks, all cut at one instant)',
  'per-disk': 'per disk (each member at its own moment, as its snapshot\'s consistency says)',
};

export function groupDetails(g: Group): string {
  const pairs: Array<[string, string]> = [
    ['id', g.id],
    ['name', g.name],
    ['status', g.status],
    ['disks', g.diskIds.join(', ')],
    ['snapshots', g.snapshotIds.length > 0 ? g.snapshotIds.join(', ') : '-'],
    ['created', `${g.createdAt} (${relativeTime(g.createdAt)})`],
    ['completed', g.completedAt ?? '-'],
  ];
  if (g.description !== '') pairs.splice(2, 0, ['description', g.description]);
  if (g.consistency) pairs.push(['consistency', GROUP_CONSISTENCY_TEXT[g.consistency] ?? g.consistency]);
  if (g.error) pairs.push(['error', `${g.error.message} [${g.error.code}]`]);
  return details(pairs);
}

export function groupRollbackView(r: GroupRollback): string {
  return r.jobs.map((j) => `${j.diskId}: rollback to ${j.snapshotId} ${j.state}${j.error ? ` (${j.error.message} [${j.error.code}])` : ''} (job ${j.id})`).join('\n');
}
