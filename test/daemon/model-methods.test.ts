/** The policy, group and tag methods of the wire, in process against a real engine (params included). */
import t from 'tap';
import { lookupMethod, type CallContext } from '../../src/daemon/methods';
import { StreamChannels } from '../../src/daemon/stream-channels';
import { finished } from '../helpers/engine';
import { fillBlock, sha256File } from '../helpers/images';
import { KiB64, openSmallEngine, smallDisk } from '../helpers/model';

t.test('policy, group and tag methods validate their params and reach the engine', async (t) => {
  const f = await openSmallEngine(t);
  const a = await smallDisk(f, 'a', 2);
  const b = await smallDisk(f, 'b', 2);
  const ctx: CallContext = {
    engine: f.engine, info: { version: 'test', build: 'test', pid: process.pid, startedAt: '' }, watch() {}, unwatch() {}, channels: new StreamChannels(() => undefined), peerUid: process.getuid!(),
  };
  const call = (name: string, params: Record<string, unknown> = {}): Promise<any> => lookupMethod(name)!.call(ctx, params);

  const p = await call('policy.create', { name: 'daily', hours: [2, 14], weekdays: [1, 2, 3, 4, 5], timeZone: 'Asia/Tokyo', keepLast: 3, keepDaily: 7, description: 'd' });
  t.match(p, { name: 'daily', hours: [2, 14], timeZone: 'Asia/Tokyo', retention: { days: null, keepLast: 3, keepDaily: 7 }, description: 'd' });
  t.match(p.nextRunAt, /T(17|05):00:00\.000Z$/, 'next run at 02:00 or 14:00 Tokyo time');
  await t.rejects(call('policy.create', { name: 'x', hours: [24] }), { code: 'InvalidArgument', message: /params\.hours must be a non-empty array of integers from 0 to 23/ });
  await t.rejects(call('policy.create', { name: 'x' }), { code: 'InvalidArgument', message: /params\.hours/ });
  await t.rejects(call('policy.create', { name: 'x', hours: [1], retentionDays: 3, keepLast: 1 }), { code: 'InvalidArgument' });
  t.equal((await call('policy.update', { policy: 'daily', retentionDays: -1, enabled: false })).nextRunAt, null, 'disabled: no next run');
  t.same((await call('policy.show', { policy: 'daily' })).retention.days, -1);
  t.same((await call('policy.bind', { policy: 'daily', disks: ['a'] })).diskIds, [a.id]);
  await t.rejects(call('policy.bind', { policy: 'daily', disks: [] }), { code: 'InvalidArgument' });
  const run = await call('policy.run', { policy: 'daily' });
  t.same(run.disks.map((e: { outcome: string }) => e.outcome), ['created']);
  t.equal((await call('policy.list')).length, 1);
  t.same((await call('policy.unbind', { policy: 'daily', disks: ['a'] })).diskIds, []);
  t.equal((await call('policy.delete', { policy: 'daily' })).name, 'daily');

  const started = await call('group.create', { disks: ['a', 'b'], name: 'pair' });
  t.equal(started.status, 'creating', 'without wait: as started');
  for (const j of f.engine.listJobs().filter((x) => started.snapshotIds.includes(x.snapshotId))) await finished(f.engine, j);
  const h = await sha256File(a.path);
  const g2 = await call('group.create', { disks: [a.id, b.id], name: 'pair2', description: 'x', wait: true });
  t.equal(g2.status, 'available', 'with wait: once done');
  t.equal((await call('group.list')).length, 2);
  t.equal((await call('group.show', { group: 'pair2' })).id, g2.id);
  fillBlock(a.path, 0, KiB64, 'changed');
  const rb = await call('group.rollback', { group: 'pair2', wait: true });
  t.same(rb.jobs.map((j: { state: string }) => j.state), ['succeeded', 'succeeded']);
  t.equal(await sha256File(a.path), h);

  const member = g2.snapshotIds[0];
  t.same((await call('snapshot.tag', { snapshot: member, tags: { env: 'prod' } })).tags, { env: 'prod' });
  await t.rejects(call('snapshot.tag', { snapshot: member, tags: { env: 1 } }), { code: 'InvalidArgument', message: /params\.tags must be a map of strings to strings/ });
  t.same((await call('snapshot.list', { tags: { env: 'prod' } })).map((s: { id: string }) => s.id), [member]);
  t.same(await call('snapshot.list', { disk: 'b', tags: { env: 'prod' } }), []);
  t.same((await call('snapshot.untag', { snapshot: member, keys: ['env'] })).tags, {});
  await t.rejects(call('snapshot.delete', { snapshot: member }), { code: 'SnapshotInGroup' });
  t.equal((await call('group.delete', { group: 'pair2' })).id, g2.id);
  t.equal((await call('group.delete', { group: 'pair' })).name, 'pair');
});

t.test('policy.delete answers the deleted Policy with nextRunAt null, as every policy method answers a Policy', async (t) => {
  const f = await openSmallEngine(t);
  const ctx: CallContext = {
    engine: f.engine, info: { version: 'test', build: 'test', pid: process.pid, startedAt: '' }, watch() {}, unwatch() {}, channels: new StreamChannels(() => undefined), peerUid: process.getuid!(),
  };
  lookupMethod('policy.create')!.call(ctx, { name: 'daily', hours: [2] });
  const deleted = await lookupMethod('policy.delete')!.call(ctx, { policy: 'daily' }) as { name: string; nextRunAt: unknown };
  t.match(deleted, { name: 'daily', nextRunAt: null });
});
