/**
 * The text of a policy run says how many snapshots it deleted whatever its outcome: a deletion
 * shown only for created snapshots would hide one that came with a failure.
 */
import t from 'tap';
import type { PolicyEvent } from '../../src/catalog/model-records';
import { policyRunView } from '../../src/cli/model-views';

const failed: PolicyEvent = {
  dueAt: '2027-01-01T01:00:00.000Z', at: '2027-01-01T01:00:00.000Z', diskId: 'd-0123456789abcdef', outcome: 'failed',
  snapshotId: 's-0123456789abcdef', expired: ['s-1'], error: { code: 'ImageNotFound', message: 'image /vm/y.raw does not exist' },
};

t.test('a failed run that deleted a snapshot says so after its error', async (t) => {
  t.equal(policyRunView({ policyId: 'p-0123456789abcdef', startedAt: failed.at, disks: [failed] }),
    '2027-01-01T01:00:00.000Z d-0123456789abcdef failed: image /vm/y.raw does not exist [ImageNotFound], expired 1');
});

t.test('a failed run that deleted nothing says nothing of it', async (t) => {
  t.equal(policyRunView({ policyId: 'p-0123456789abcdef', startedAt: failed.at, disks: [{ ...failed, expired: [] }] }),
    '2027-01-01T01:00:00.000Z d-0123456789abcdef failed: image /vm/y.raw does not exist [ImageNotFound]');
});
