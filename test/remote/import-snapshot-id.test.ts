/**
 * A remote import or restore names the snapshot it fetches from the moment its manifest is read,
 * the snapshot asked for by name too: `job show` says which while its blocks are downloaded.
 */
import { join } from 'node:path';
import t from 'tap';
import { snapshot } from '../helpers/engine';
import { MemoryStore } from './memory-store';
import { cancelledAt, openHost, replicate } from './memory-engine';

t.test('a remote import and a restore name their snapshot while they download its blocks', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const vm = await a.disk('vm', 2);
  const s1 = await snapshot(a.engine, vm.id, 's1');
  await replicate(a, s1.id);
  const b = await openHost(t, shared);
  const disk = await b.disk('x', 1);
  for (const start of [
    () => b.engine.offsite.remoteRestore.startImport('off', 's1', disk.id),
    () => b.engine.offsite.remoteRestore.startRestore('off', 's1', join(b.images, 'r.raw')),
  ]) {
    const end = await cancelledAt(b, 'get', start, (running) => t.equal(running.snapshotId, s1.id, `${running.kind}, asked for by name`));
    t.equal(end.snapshotId, s1.id, `${end.kind}, once cancelled`);
  }
});
