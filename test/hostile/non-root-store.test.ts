/**
 * A daemon run by a user other than root meets store entries it may not read or unlink (a block
 * file or fan-out directory chowned or chmodded by hand): it says which and why, keeps serving,
 * and starts again with them in place.
 */
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import type { GcResult, Job, StoreStats, VerifyResult } from '../../src/engine/types';
import { asUserSkip, scratch, startedAs, USER_A } from '../helpers/as-user';
import { makeImage, pattern, writeAt } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';

const skip = asUserSkip();
const BLOCK = 4 * 1024 * 1024; // the default block size

/** A daemon as USER_A with one disk of two blocks, snapshotted as `s1`. */
async function daemonWithSnapshot(t: Test) {
  const { home, images } = scratch(t);
  const run = join(home, 'run');
  mkdirSync(run);
  chownSync(run, USER_A.uid, USER_A.gid);
  const dataDir = join(home, 'data');
  const socket = join(run, 'd.sock');
  const args = ['--data-dir', dataDir, '--socket', socket, '--nbd-socket', join(run, 'n.sock')];
  const start = async () => {
    const d = await startedAs(t, USER_A, args, {}, images, socket);
    const c = await DaemonClient.connect({ socketPath: socket });
    t.teardown(() => c.close());
    const stop = async (): Promise<void> => {
      const exited = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await exited;
    };
    return Object.assign(c, { stop });
  };
  const image = makeImage(join(images, 'vm.raw'), 2 * BLOCK);
  for (let i = 0; i < 2; i++) writeAt(image, i * BLOCK, pattern(`nr-${i}`, BLOCK));
  chownSync(image, USER_A.uid, USER_A.gid);
  const c = await start();
  await c.call('disk.add', { path: image, name: 'vm' });
  const s1 = (await c.call<Job>('snapshot.create', { disk: 'vm', name: 's1', wait: true })).result as { id: string };
  return { c, dataDir, s1, start, block1: blockPath(dataDir, sha(pattern('nr-1', BLOCK))) };
}

t.test('store verify says a block the daemon\'s user may not read is a matter of its permissions', { skip }, async (t) => {
  const { c, block1 } = await daemonWithSnapshot(t);
  chmodSync(block1, 0o000);
  const r = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.equal(r.problems.length, 1);
  t.match(r.problems[0], { reason: 'io-error', repairable: false });
  t.match(r.problems[0]!.message, `the daemon's user may not read ${block1}: give it back its owner and mode`);
});

t.test('a freed block the daemon\'s user may not unlink stays pending, is listed by store stats, and the daemon starts again', { skip }, async (t) => {
  const { c, s1, block1, start } = await daemonWithSnapshot(t);
  chownSync(dirname(block1), 0, 0); // root's, mode 0755: the daemon's user may not unlink in it
  await c.call('snapshot.delete', { snapshot: s1.id });
  const until = Date.now() + 30_000; // the sweep runs after the delete has answered
  let stats = await c.call<StoreStats>('store.stats');
  while (stats.pendingFreeBlocks !== 1 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    stats = await c.call<StoreStats>('store.stats');
  }
  t.equal(stats.pendingFreeBlocks, 1, 'the other freed block was unlinked');
  t.same(stats.unremovable.map((e) => [e.path, e.code]), [[block1, 'EACCES']]);
  await c.stop();
  const again = await start();
  t.equal((await again.call<StoreStats>('store.stats')).pendingFreeBlocks, 1, 'it serves, the block still pending');
});

t.test('gc of a block store the daemon\'s user may not list fails as a permission matter of the store, naming it', { skip }, async (t) => {
  const { c, dataDir } = await daemonWithSnapshot(t);
  const blocks = join(dataDir, 'blocks');
  chownSync(blocks, 0, 0);
  chmodSync(blocks, 0o711); // its user may still reach blocks/tmp, but not list the store
  const gc = await c.call<Job>('store.gc', { wait: true });
  t.equal(gc.error?.code, 'PermissionDenied');
  t.match(gc.error?.message, `cannot list the block store ${blocks}: EACCES`);
});

t.test('gc reports a fan-out directory the daemon\'s user may not read and reclaims the rest', { skip }, async (t) => {
  const { c, block1 } = await daemonWithSnapshot(t);
  chownSync(dirname(block1), 0, 0);
  chmodSync(dirname(block1), 0o700);
  const gc = (await c.call<Job>('store.gc', { wait: true })).result as GcResult;
  t.equal(gc.unremovableEntries, 1);
  t.match(gc.unremovable[0], { path: dirname(block1), code: 'EACCES' });
  t.equal(gc.keptBlocks, 1, 'the block it could list is kept');
});
