/**
 * A remote import or restore names the snapshot it fetches from the moment its manifest is read,
 * the snapshot asked for by name too: `job show` says which while its blocks are downloaded.
 */
import { join } from 'node:path';
import t from 'tap';
import { snapshot } from '../helpers/engine';
import { MemoryStore } from './memory-store';
import { isBlockKey, openHost, replicate, sleep } from './memory-engine';

t.test('a remote import and a restore name their snapshot while they download its blocks', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const vm = await a.disk('vm', 2);
  const s1 = await snapshot(a.engine, vm.id, 's1');
  await replicate(a, s1.id);
  const b = await openHost(t, shared);
  const disk = await b.disk('x', 1);
  // Block downloads wait for `release`: the job is then cancelled, and its requests see that.
  let held = 0;
  let release = (): void => {};
  b.store.hook = async (op, key) => {
    if (op !== 'get' || !isBlockKey(key)) return;
    held++;
    await new Promise<void>((r) => { const prev = release; release = () => { prev(); r(); }; });
  };
  for (const start of [
    () => b.engine.offsite.remoteRestore.startImport('off', 's1', disk.id),
    () => b.engine.offsite.remoteRestore.startRestore('off', 's1', join(b.images, 'r.raw')),
  ]) {
    const before = held;
    const job = start();
    while (held === before) await sleep(5);
    t.equal(b.engine.getJob(job.id).snapshotId, s1.id, `${job.kind}, asked for by name`);
    b.engine.cancelJob(job.id);
    release();
    t.equal((await b.engine.waitJob(job.id)).state, 'cancelled', 'and ends cancelled');
  }
});
