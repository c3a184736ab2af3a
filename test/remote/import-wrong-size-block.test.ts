/**
 * A remote import and a qcow2 restore need a block whose file this host has, cut short by damage
 * the daemon has not yet met: each downloads the block and writes it over the damaged file, as a
 * snapshot would, instead of blaming the bucket (RemoteCorrupt) for the store's damage. Engines
 * on one in-memory bucket (memory-engine.ts).
 */
import { readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { ImportResult, RestoreResult } from '../../src/engine/offsite-types';
import type { VerifyResult } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, pattern } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { blockPath, sha } from '../helpers/store-damage';
import { MemoryStore } from './memory-store';
import { openHost, replicate, type Host } from './memory-engine';

/**
 * Host a: disk vm (4 blocks) with s1 and s2 (block 3 changed), both replicated. Host b: s1
 * imported, then the file of block 0 (which s2 shares) cut to 4096 bytes.
 */
async function damagedHost(t: Test) {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const vm = await a.disk('vm', 4);
  const s1 = await snapshot(a.engine, vm.id, 's1');
  await replicate(a, s1.id);
  fillBlock(vm.path, 3, KiB64, 'vm-3-changed');
  const s2 = await snapshot(a.engine, vm.id, 's2');
  await replicate(a, s2.id);
  const b = await openHost(t, shared);
  const disk = await b.disk('x', 1);
  await finished(b.engine, b.engine.offsite.remoteRestore.startImport('off', s1.id, disk.id));
  const hex = sha(pattern('vm-0', KiB64));
  const file = blockPath(b.dataDir, hex);
  truncateSync(file, 4096);
  return { a, b, vm, s2, disk, hex, file };
}

async function verify(h: Host): Promise<VerifyResult> {
  return (await finished(h.engine, h.engine.startVerify())).result as VerifyResult;
}

t.test('a remote import writes a block again over a file here of the wrong size', async (t) => {
  const { b, vm, s2, disk, hex, file } = await damagedHost(t);
  const done = await finished(b.engine, b.engine.offsite.remoteRestore.startImport('off', s2.id, disk.id));
  t.match(done.result as ImportResult, { repairedBlocks: 1, storedBlocks: 1, presentBlocks: 2 }, 'block 0 repaired, block 3 new');
  t.equal(sha(readFileSync(file).subarray(64)), hex, 'the block file is whole again');
  const clone = join(b.images, 'c.raw');
  await finished(b.engine, b.engine.startClone(s2.id, clone));
  t.ok(readFileSync(clone).equals(readFileSync(vm.path)), 'the clone is the image snapshotted');
  const v = await verify(b);
  t.same(v.problems, []);
  t.equal(v.awaitingRepair, 0);
});

t.test('a qcow2 restore writes a block again over a file here of the wrong size', async (t) => {
  const { b, s2, hex, file } = await damagedHost(t);
  const done = await finished(b.engine, b.engine.offsite.remoteRestore.startRestore('off', s2.id, join(b.images, 'r.qcow2'), { format: 'qcow2' }));
  t.match(done.result as RestoreResult, { downloadedBlocks: 2 }, 'block 0 again, block 3 new');
  t.equal(sha(readFileSync(file).subarray(64)), hex, 'the block file is whole again');
  const v = await verify(b);
  t.same(v.problems, []);
  t.equal(v.awaitingRepair, 0, 'its mark went once the file was durable');
});
