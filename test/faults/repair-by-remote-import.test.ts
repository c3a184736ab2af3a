/**
 * A block damaged in place keeps its size, so an import that finds a file by that name would
 * take it for present and reference it as it is. An import from a remote must instead download a
 * block listed as damaged and write it over the damaged file: the one way back for a host where
 * no disk holds the block's content any more.
 */
import { join } from 'node:path';
import t from 'tap';
import type { VerifyResult } from '../../src/engine/types';
import { finished } from '../helpers/engine';
import { readAt } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { markOf, payloadDigest } from '../helpers/damage-marks';
import { rottedCopyOfReplicatedBlock } from '../remote/rotted-copy';

t.test('an import from a remote writes a block listed as damaged again, and its commit forgets the mark', async (t) => {
  const { b, sA, sB, hex, good, found } = await rottedCopyOfReplicatedBlock(t, 2);
  t.match(found.problems, [{ digest: hex, reason: 'digest-mismatch' }]);
  t.ok(markOf(b.engine, hex), 'listed as damaged');

  const target = await b.disk('t', 4);
  const job = await finished(b.engine, b.engine.offsite.remoteRestore.startImport('off', sA.id, target.id));
  t.match(job.result, { snapshotId: sA.id });
  t.equal(payloadDigest(b.dataDir, hex), hex, 'the block file holds the good bytes again');
  t.equal(markOf(b.engine, hex), undefined, 'and is no longer listed');
  const after = (await finished(b.engine, b.engine.startVerify())).result as VerifyResult;
  t.same(after.problems, [], 'verify is clean');
  t.equal(after.awaitingRepair, 0);
  const copy = join(b.images, 'sB.raw');
  await finished(b.engine, b.engine.startClone(sB.id, copy));
  t.ok(readAt(copy, KiB64, KiB64).equals(good), "b's own old snapshot restores its block again");
});
