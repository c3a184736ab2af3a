import t from 'tap';
import { InvalidArgumentError } from 'commander';
import { integerOption, parseIntegerList, parseTags } from '../../src/cli/arguments';
import { groupDetails, groupRollbackView, groupTable, policyDetails, policyRunView, policyTable, retentionText, scheduleText, type ServedPolicy } from '../../src/cli/model-views';
import { KEEP_FOREVER, resolveRetention } from '../../src/engine/retention';
import type { Group } from '../../src/engine/groups';
import type { Job } from '../../src/engine/types';

t.test('hour and weekday lists: numbers and ranges, sorted, bounded', async (t) => {
  t.same(parseIntegerList('14,2', 0, 23), [2, 14]);
  t.same(parseIntegerList('1-5,7', 1, 7), [1, 2, 3, 4, 5, 7]);
  t.same(parseIntegerList('0-23', 0, 23).length, 24);
  t.same(parseIntegerList(' 3 , 3 ', 0, 23), [3]);
  for (const bad of ['24', '5-1', 'a', '', '1,,2', '-1']) t.throws(() => parseIntegerList(bad, 0, 23), InvalidArgumentError, JSON.stringify(bad));
});

t.test('integer options and tags', async (t) => {
  t.equal(integerOption(-1, 10)('-1'), -1);
  t.throws(() => integerOption(-1, 10)('-2'), InvalidArgumentError);
  t.throws(() => integerOption(0)('1.5'), InvalidArgumentError);
  t.throws(() => integerOption(0)('x'), { message: 'must be an integer of 0 or more' }, 'no upper bound is named when there is none');
  t.same(parseTags(['env=prod', 'empty=', 'expr=a=b']), { env: 'prod', empty: '', expr: 'a=b' });
  t.throws(() => parseTags(['novalue']), InvalidArgumentError);
  t.throws(() => parseTags(['=v']), InvalidArgumentError);
});

const policy: ServedPolicy = {
  id: 'p-0123456789abcdef', name: 'daily', description: 'nightly', hours: [2, 3, 4, 14], weekdays: [1, 2, 3, 4, 5], timeZone: 'Europe/Berlin',
  retention: resolveRetention({ keepDaily: 7, keepWeekly: 4 }), enabled: true, createdAt: '2027-01-01T00:00:00.000Z', updatedAt: '2027-01-01T00:00:00.000Z', scheduleChangedAt: '2027-01-01T00:00:00.000Z',
  diskIds: ['d-0123456789abcdef'], nextRunAt: '2027-01-02T01:00:00.000Z',
  history: [
    { dueAt: '2027-01-01T01:00:00.000Z', at: '2027-01-01T01:00:00.000Z', diskId: 'd-0123456789abcdef', outcome: 'created', snapshotId: 's-0123456789abcdef', expired: ['s-1'], error: null },
    { dueAt: '2027-01-01T13:00:00.000Z', at: '2027-01-01T14:00:00.000Z', diskId: 'd-0123456789abcdef', outcome: 'skipped', snapshotId: null, expired: [], error: { code: 'DiskBusy', message: 'busy' } },
  ],
};

t.test('policy views', async (t) => {
  t.equal(retentionText(KEEP_FOREVER), 'forever (up to the quota)');
  t.equal(retentionText(resolveRetention({ days: 1 })), '1 day');
  t.equal(retentionText(resolveRetention({ days: 30 })), '30 days');
  t.equal(retentionText(policy.retention), 'daily 7, weekly 4');
  t.equal(scheduleText(policy), 'hours 2-4,14, weekdays 1-5 (Europe/Berlin)');
  t.equal(scheduleText({ ...policy, weekdays: [1, 2, 3, 4, 5, 6, 7], hours: [2, 3] }), 'hours 2,3, every day (Europe/Berlin)');
  t.match(policyTable([policy]), /daily\s+hours 2-4,14/);
  t.match(policyTable([{ ...policy, enabled: false, nextRunAt: null }]), /disabled/);
  t.match(policyTable([]), /No policies/);
  const shown = policyDetails(policy);
  t.match(shown, /description: nightly/);
  t.match(shown, /recent runs:\n {2}2027-01-01T14:00:00.000Z d-0123456789abcdef skipped: busy \[DiskBusy\]\n {2}.*created s-0123456789abcdef, expired 1/);
  t.match(policyRunView({ policyId: policy.id, startedAt: policy.createdAt, disks: policy.history }), /created s-0123456789abcdef/);
  t.match(policyRunView({ policyId: policy.id, startedAt: policy.createdAt, disks: [] }), /no disks bound/);
});

t.test('group views', async (t) => {
  const g: Group = {
    id: 'g-0123456789abcdef', name: 'pre', description: 'rel 42', status: 'error', diskIds: ['d-1', 'd-2'], snapshotIds: [],
    createdAt: '2027-01-01T00:00:00.000Z', completedAt: '2027-01-01T00:00:01.000Z', error: { code: 'ImageNotFound', message: 'gone' },
  };
  t.match(groupTable([g]), /pre\s+error\s+2/);
  t.match(groupTable([]), /No groups/);
  t.match(groupDetails(g), /description: rel 42[\s\S]*snapshots:\s+-[\s\S]*error:\s+gone \[ImageNotFound\]/);
  t.notMatch(groupDetails(g), /consistency/, 'a group recorded before its consistency shows none');
  t.match(groupDetails({ ...g, consistency: 'per-disk' }), /consistency:\s+per disk \(each member at its own moment/);
  const job = { id: 'j-1', diskId: 'd-1', snapshotId: 's-1', state: 'failed', error: { code: 'DigestMismatch', message: 'bad block' } } as Job;
  t.match(groupRollbackView({ groupId: g.id, jobs: [job] }), /d-1: rollback to s-1 failed \(bad block \[DigestMismatch\]\)/);
});
