/**
 * `import REMOTE SNAP` of a snapshot that is here already is refused, and the refusal tells the
 * way the remote mends it instead: store verify, then a qcow2 restore from the remote, which
 * downloads each recorded block into the store.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { VerifyResult } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';
import { blockPath, sha } from '../helpers/store-damage';
import { MemoryStore } from './memory-store';
import { openHost, type Host } from './memory-engine';

async function replicatedHere(h: Host): Promise<string> {
  const d = await h.disk('vm', 4);
  const s = await snapshot(h.engine, d.id);
  await finished(h.engine, h.engine.offsite.replication.startReplicate(s.id, 'off'));
  return s.id;
}

t.test('importing a remote snapshot that is here says that the import does not mend it, and what does', async (t) => {
  const h = await openHost(t, new MemoryStore());
  const id = await replicatedHere(h);
  const job = await h.engine.waitJob(h.engine.offsite.remoteRestore.startImport('off', id, 'vm').id);
  t.match(job.error, {
    code: 'SnapshotExists',
    message: `snapshot ${id} is already in this catalog, and an import from a remote does not mend a snapshot that is here. To write its damaged or missing ` +
      `blocks again from remote off: blocksnap store verify, which records them, then blocksnap restore off ${id} PATH --format qcow2, ` +
      'which downloads each recorded block into the store before it writes the image at PATH (delete that image afterwards if it is not wanted)',
  });
});

t.test('the way the refusal tells mends the snapshot\'s lost block from the remote', async (t) => {
  const h = await openHost(t, new MemoryStore());
  const id = await replicatedHere(h);
  rmSync(blockPath(h.dataDir, sha(pattern('vm-1', 64 * 1024))));
  t.equal(((await finished(h.engine, h.engine.startVerify())).result as VerifyResult).problems.length, 1, 'store verify records the lost block');
  await finished(h.engine, h.engine.offsite.remoteRestore.startRestore('off', id, join(h.images, 'r.qcow2'), { format: 'qcow2' }));
  t.same(((await finished(h.engine, h.engine.startVerify())).result as VerifyResult).problems, [], 'the store is whole again');
});
