/**
 * A snapshot of a copy-on-write disk that fails after its scan stored the written blocks gives
 * them back, as an image disk's does (engine failSnapshot): the volume's scan attaches what it
 * stored to the error. Here the failure is the check before the commit, which refuses to commit
 * over a base block recorded missing.
 */
import { existsSync, rmSync } from 'node:fs';
import t from 'tap';
import type { VerifyResult } from '../../src/engine/types';
import { served } from '../helpers/cow';
import { engineWithSnapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';

const BS = 64 * 1024;

t.test('a failed snapshot of a COW disk frees the blocks its scan stored', async (t) => {
  const { engine, dataDir } = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  await engine.cloneCow('base', 'c');
  const b = await served(engine, 'c');
  await b.write!(2 * BS, pattern('new-2', BS), true);
  await b.write!(3 * BS, pattern('new-3', BS), true);
  await engine.exports.stop('c');

  // Block 1 is read from the base, unwritten: recorded missing, it fails the snapshot before its commit.
  rmSync(blockPath(dataDir, sha(pattern('a-1', BS))));
  const verify = await engine.waitJob(engine.startVerify().id);
  t.equal((verify.result as VerifyResult).problems.length, 1, 'verify records the missing base block');
  const failed = await engine.waitJob(engine.startSnapshot('c').id);
  t.equal(failed.error?.code, 'BlockMissing', 'the snapshot fails after its scan');

  await engine.idle();
  const written = ['new-2', 'new-3'].map((p) => blockPath(dataDir, sha(pattern(p, BS))));
  t.same(written.map((p) => existsSync(p)), [false, false], 'the blocks its scan stored are unlinked');
  t.equal(engine.storeStats().pendingFreeBlocks, 0, 'nothing is left pending');
});
