/**
 * Catalogs written before a group member committed with its place in the group's list: a crash
 * between the two commits left a member naming a group that did not list it. The next start
 * removes it where its group's error says its members were removed, or where its group is gone,
 * and `group delete` takes it with the group; then its disk can be removed.
 */
import t, { type Test } from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { ModelCatalog } from '../../src/catalog/model-records';
import { KiB64, openSmallEngine, smallDisk, type ModelFixture } from '../helpers/model';

/** Rewrites the closed engine's catalog: `edit` runs in one transaction. */
async function rewrite(dataDir: string, edit: (catalog: Catalog, model: ModelCatalog) => void): Promise<void> {
  const catalog = Catalog.open(dataDir, KiB64);
  catalog.txn(() => edit(catalog, new ModelCatalog(catalog)));
  await catalog.close();
}

/**
 * Disk a with group g1 of it alone, taken and closed; `clone`: copy-on-write disk vm rests on the
 * member. Returns the group's and the member's ids.
 */
async function groupOfOne(t: Test, dir: string, o: { clone?: boolean } = {}): Promise<{ f: ModelFixture; groupId: string; memberId: string }> {
  const f = await openSmallEngine(t, { dir });
  await smallDisk(f, 'a', 2);
  const g = await f.engine.groups.create({ disks: ['a'], name: 'g1' }).done;
  if (o.clone) await f.engine.cloneCow(g.snapshotIds[0]!, 'vm');
  await f.engine.close();
  return { f, groupId: g.id, memberId: g.snapshotIds[0]! };
}

t.test('a failed group that does not list a member naming it: the next start removes the member', async (t) => {
  const dir = t.testdir();
  const { f, groupId, memberId } = await groupOfOne(t, dir);
  // What the old recovery left: the group `error` with no members, the member cut off.
  await rewrite(f.dataDir, (catalog, model) => {
    model.putGroup({ ...model.getGroup(groupId)!, status: 'error', snapshotIds: [], error: { code: 'Interrupted', message: 'its partial members were removed' } });
    catalog.putSnapshot({ ...catalog.getSnapshot(memberId)!, status: 'error', error: { code: 'Interrupted', message: 'cut off' } });
  });

  const after = await openSmallEngine(t, { dir });
  t.same(after.engine.listSnapshots('a'), [], 'the member was removed');
  t.same(after.engine.groups.get(groupId).snapshotIds, [], 'the group still lists none');
  await after.engine.removeDisk('a', { deleteSnapshots: true });
  t.same(after.engine.listDisks(), [], 'its disk could be removed');
});

t.test('a failed group\'s unlisted member that a copy-on-write disk rests on stays, listed in its group', async (t) => {
  const dir = t.testdir();
  const { f, groupId, memberId } = await groupOfOne(t, dir, { clone: true });
  await rewrite(f.dataDir, (_catalog, model) => {
    model.putGroup({ ...model.getGroup(groupId)!, status: 'error', snapshotIds: [], error: { code: 'Interrupted', message: 'its partial members were removed' } });
  });

  const after = await openSmallEngine(t, { dir });
  t.same(after.engine.groups.get(groupId).snapshotIds, [memberId], 'the group lists it now');
  t.throws(() => after.engine.groups.delete(groupId), { code: 'SnapshotHasClones' }, 'and keeps it while the clone rests on it');
  await after.engine.removeDisk('vm', { deleteSnapshots: true });
  after.engine.groups.delete(groupId);
  await after.engine.removeDisk('a', { deleteSnapshots: true });
  t.same(after.engine.listDisks(), [], 'once its clone was gone, the group took it and its disk was removed');
});

t.test('a member of a deleted group: the next start removes it', async (t) => {
  const dir = t.testdir();
  const { f, groupId } = await groupOfOne(t, dir);
  // What `group delete` left of a group that listed none of its members.
  await rewrite(f.dataDir, (_catalog, model) => model.deleteGroup(groupId));

  const after = await openSmallEngine(t, { dir });
  t.same(after.engine.listSnapshots('a'), [], 'the member was removed');
  await after.engine.removeDisk('a', { deleteSnapshots: true });
  t.same(after.engine.listDisks(), [], 'its disk could be removed');
});

t.test('a member of a deleted group that a copy-on-write disk rests on stays, as a plain snapshot', async (t) => {
  const dir = t.testdir();
  const { f, groupId, memberId } = await groupOfOne(t, dir, { clone: true });
  await rewrite(f.dataDir, (_catalog, model) => model.deleteGroup(groupId));

  const after = await openSmallEngine(t, { dir });
  t.equal(after.engine.getSnapshot(memberId).groupId, null, 'it left the group it named');
  await after.engine.removeDisk('vm', { deleteSnapshots: true });
  await after.engine.deleteSnapshot(memberId);
  await after.engine.removeDisk('a', { deleteSnapshots: true });
  t.same(after.engine.listDisks(), [], 'once its clone was gone, it was deleted and its disk removed');
});

t.test('group delete takes a member its group does not list', async (t) => {
  const dir = t.testdir();
  const { f, groupId, memberId } = await groupOfOne(t, dir);
  await rewrite(f.dataDir, (_catalog, model) => model.putGroup({ ...model.getGroup(groupId)!, snapshotIds: [] }));

  const after = await openSmallEngine(t, { dir });
  t.equal(after.engine.getSnapshot(memberId).groupId, groupId, 'an available group\'s member is left to it at start');
  after.engine.groups.delete(groupId);
  t.same(after.engine.listSnapshots('a'), [], 'the member went with its group');
  await after.engine.removeDisk('a', { deleteSnapshots: true });
  t.same(after.engine.listDisks(), [], 'its disk could be removed');
});
