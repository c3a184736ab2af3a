/**
 * A cancelled replicate, restore or remote import says "the job was cancelled", as other kinds do,
 * not which S3 request the cancel happened to stop ("PUT cancelled"); a restore adds that its
 * target was not created.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { snapshot } from '../helpers/engine';
import { MemoryStore } from './memory-store';
import { cancelledAt, openHost, replicate } from './memory-engine';

t.test('replicate, remote import and restore report a cancel as the job\'s', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const vm = await a.disk('vm', 2);
  const s1 = await snapshot(a.engine, vm.id, 's1');
  const replicated = await cancelledAt(a, 'put', () => a.engine.offsite.replication.startReplicate(s1.id, 'off'));
  t.match(replicated, { state: 'cancelled', error: { code: 'Cancelled', message: 'the job was cancelled' } }, 'replicate');

  await replicate(a, s1.id);
  const b = await openHost(t, shared);
  const disk = await b.disk('x', 1);
  const imported = await cancelledAt(b, 'get', () => b.engine.offsite.remoteRestore.startImport('off', s1.id, disk.id));
  t.match(imported, { state: 'cancelled', error: { code: 'Cancelled', message: 'the job was cancelled' } }, 'remote import');

  const target = join(b.images, 'r.raw');
  const restored = await cancelledAt(b, 'get', () => b.engine.offsite.remoteRestore.startRestore('off', s1.id, target));
  t.match(restored, { state: 'cancelled', error: { code: 'Cancelled', message: `the job was cancelled; ${target} was not created` } }, 'restore');
  t.notOk(existsSync(target), 'and it was not');
});
