/**
 * Policies with a remote (`--replicate-to`): the scheduler, on a ManualClock shared with the
 * engine, takes the automatic snapshot and then replicates it to a real Ceph radosgw
 * (test/infra/ceph). Nothing here sleeps; the replication job is awaited by its id.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import type { PolicyEvent } from '../../src/catalog/model-records';
import type { ReplicateResult } from '../../src/engine/offsite-types';
import { Scheduler } from '../../src/scheduler/scheduler';
import { ManualClock } from '../helpers/clock';
import { snapshot } from '../helpers/engine';
import { fillBlock } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';
import { useCeph, type Ceph } from '../infra/ceph/fixture';
import { credentialsFile, newBucket, s3Client } from '../infra/ceph/s3';

const ceph = useCeph(t);

async function setup(t: Test, c: Ceph, bucket: string) {
  const clock = new ManualClock('2027-01-04T01:00:00Z');
  const f = await openSmallEngine(t, { now: () => clock.now() });
  const disk = await smallDisk(f, 'vm', 8);
  f.engine.offsite.replication.addRemote({ name: 'off', endpoint: c.endpoint, bucket, credentialsFile: credentialsFile(f.images, c) });
  const scheduler = new Scheduler(f.engine.policies, { clock });
  t.teardown(() => scheduler.stop());
  const pass = async (iso: string): Promise<PolicyEvent> => {
    clock.set(iso);
    await scheduler.tick();
    await scheduler.idle();
    return f.engine.policies.get('nightly').history.at(-1)!;
  };
  /** The run's replication job, once ended, and the policy's record of it. */
  const replicated = async (e: PolicyEvent) => {
    const job = await f.engine.waitJob(e.replication!.jobId!);
    const recorded = f.engine.policies.get('nightly').history.find((h) => h.replication?.jobId === job.id)!.replication;
    return { job, recorded };
  };
  return { f, disk, pass, replicated };
}

if (ceph) {
  t.test('each automatic snapshot is replicated after its run; manual ones are not', async (t) => {
    const { f, disk, pass, replicated } = await setup(t, ceph, await newBucket(ceph, 'policy'));
    const manual = await snapshot(f.engine, disk.id, 'by-hand');
    f.engine.policies.create({ name: 'nightly', hours: [2], replicateTo: 'off' });
    f.engine.policies.bind('nightly', [disk.id]);
    t.equal(f.engine.policies.get('nightly').replicateTo, 'off');

    const first = await pass('2027-01-04T02:00:00Z');
    t.match(first, { outcome: 'created', replication: { remote: 'off', state: 'running' } });
    const r1 = await replicated(first);
    t.equal(r1.job.state, 'succeeded');
    t.match(r1.job.result as ReplicateResult, { replicated: [first.snapshotId], uploadedBlocks: 8 });
    t.match(r1.recorded, { state: 'succeeded', error: null }, 'the outcome is written into the run\'s event');

    fillBlock(disk.path, 3, KiB64, 'changed');
    const second = await pass('2027-01-05T02:00:00Z');
    const r2 = await replicated(second);
    t.match(r2.job.result as ReplicateResult, { replicated: [second.snapshotId], alreadyPresent: [first.snapshotId], uploadedBlocks: 1 },
      'incremental: one changed block');
    const remote = (await f.engine.offsite.replication.remoteSnapshots('off')).map((s) => s.id);
    t.same(remote, [first.snapshotId, second.snapshotId]);
    t.notOk(remote.includes(manual.id), 'the manual snapshot stays local');
  });

  t.test('a failed replication is recorded on the policy and retried by the next run', async (t) => {
    const bucket = `bs-later-${process.pid}`;
    const { f, disk, pass, replicated } = await setup(t, ceph, bucket); // the bucket does not exist yet
    f.engine.policies.create({ name: 'nightly', hours: [2], replicateTo: 'off' });
    f.engine.policies.bind('nightly', [disk.id]);
    const first = await pass('2027-01-04T02:00:00Z');
    const r1 = await replicated(first);
    t.equal(r1.job.state, 'failed');
    t.match(r1.recorded, { state: 'failed', error: { code: 'RemoteBucketMissing' } });
    t.equal(first.outcome, 'created', 'the snapshot itself succeeded');

    const s3 = s3Client(ceph);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    s3.destroy();
    const second = await pass('2027-01-05T02:00:00Z');
    const r2 = await replicated(second);
    t.match(r2.job.result as ReplicateResult, { replicated: [first.snapshotId, second.snapshotId] }, 'the first snapshot is caught up');
    t.match(r2.recorded, { state: 'succeeded' });
  });
}

t.test('a policy names only a remote that exists', async (t) => {
  const f = await openSmallEngine(t);
  t.throws(() => f.engine.policies.create({ name: 'p', hours: [1], replicateTo: 'nowhere' }), { code: 'RemoteNotFound' });
  f.engine.policies.create({ name: 'p', hours: [1] });
  t.throws(() => f.engine.policies.update('p', { replicateTo: 'nowhere' }), { code: 'RemoteNotFound' });
  t.equal(f.engine.policies.get('p').replicateTo, null);
});
