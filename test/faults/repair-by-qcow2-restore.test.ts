/**
 * `restore --format qcow2` writes its image from the local store (the native qcow2 writer reads
 * verified store blocks), so it first downloads into the store what the store lacks. A block the
 * store has but that is listed as damaged is downloaded too and written over the damaged file
 * (the writeBlock `repair` an import uses): otherwise the writer would meet the damage and the
 * restore would fail, though the remote holds the good bytes.
 */
import { join } from 'node:path';
import t from 'tap';
import type { VerifyResult } from '../../src/engine/types';
import { finished } from '../helpers/engine';
import { haveQemu, run } from '../helpers/qemu';
import { markOf, payloadDigest } from '../helpers/damage-marks';
import { rottedCopyOfReplicatedBlock } from '../remote/rotted-copy';

t.test('a qcow2 restore writes a block listed as damaged again from the remote, and forgets the mark', { skip: haveQemu() }, async (t) => {
  const { b, vm, sA, hex } = await rottedCopyOfReplicatedBlock(t, 3);
  t.ok(markOf(b.engine, hex), 'listed as damaged');

  const out = join(b.images, 'vm.qcow2');
  const job = await finished(b.engine, b.engine.offsite.remoteRestore.startRestore('off', sA.id, out, { format: 'qcow2' }));
  t.match(job.result, { format: 'qcow2', path: out });
  const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', vm.path, out]);
  t.equal(cmp.status, 0, `the image reads as the replicated disk: ${cmp.stdout}${cmp.stderr}`);
  t.equal(payloadDigest(b.dataDir, hex), hex, 'the block file holds the good bytes again');
  t.equal(markOf(b.engine, hex), undefined, 'and is no longer listed');
  const after = (await finished(b.engine, b.engine.startVerify())).result as VerifyResult;
  t.same(after.problems, [], 'verify is clean');
});
