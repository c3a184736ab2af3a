/**
 * Two hosts on one remote, where the second holds a rotted copy of a block the first replicated:
 * the case a repair from the remote (import, qcow2 restore) exists for.
 */
import type { Test } from 'tap';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, pattern, writeAt } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { blockPath, flipByte, sha } from '../helpers/store-damage';
import type { VerifyResult } from '../../src/engine/types';
import { MemoryStore } from './memory-store';
import { openHost, replicate } from './memory-engine';

/**
 * Host a replicates snapshot sA of its 4-block disk vm. Host b stored block `index` of vm
 * (block 1 of b's own disk, snapshot sB) and the file rotted: `store verify` found and marked
 * it, and b's disk has been written over since, so no disk of b holds the content any more.
 */
export async function rottedCopyOfReplicatedBlock(t: Test, index: number) {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const vm = await a.disk('vm', 4);
  const sA = await snapshot(a.engine, vm.id);
  await replicate(a, sA.id);
  const b = await openHost(t, shared);
  const own = await b.disk('own', 4);
  const good = fillBlock(own.path, 1, KiB64, `vm-${index}`);
  const sB = await snapshot(b.engine, own.id);
  const hex = sha(good);
  flipByte(blockPath(b.dataDir, hex), 64 + 999);
  const found = (await finished(b.engine, b.engine.startVerify())).result as VerifyResult;
  writeAt(own.path, KiB64, pattern('guest', KiB64));
  return { a, b, vm, sA, sB, hex, good, found };
}
