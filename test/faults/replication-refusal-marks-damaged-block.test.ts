/**
 * Replication reads blocks without hashing them (readBlockUnhashed): the remote hashes each
 * upload against its digest and refuses a mismatch. That refusal is the only place a block whose
 * payload was damaged in place (its header intact) is found on this path, so it must record the
 * block for repair as every other reader does; otherwise the next snapshot of the disk, finding
 * the file present, would reference it as it is.
 */
import t from 'tap';
import { snapshot } from '../helpers/engine';
import { fillBlock } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { markOf } from '../helpers/damage-marks';
import { blockPath, flipByte, sha } from '../helpers/store-damage';
import { MemoryStore } from '../remote/memory-store';
import { isBlockKey, openHost } from '../remote/memory-engine';

t.test('a block the remote refuses as not matching its digest is marked damaged before the job is seen to end', async (t) => {
  const shared = new MemoryStore();
  const a = await openHost(t, shared);
  const d = await a.disk('vm', 4);
  const s1 = await snapshot(a.engine, d.id);
  const hex = sha(fillBlock(d.path, 2, KiB64, 'vm-2'));
  flipByte(blockPath(a.dataDir, hex), 64 + 100); // a payload byte: the header still reads right

  const job = await a.engine.waitJob(a.engine.offsite.replication.startReplicate(s1.id, 'off').id);
  t.match(job, { state: 'failed', error: { code: 'DigestMismatch', message: new RegExp(`${hex}.*refused its upload`) } });
  t.notOk([...shared.objects.keys()].some((k) => isBlockKey(k) && k.endsWith(hex)), 'the damaged bytes are not on the remote');
  t.match(markOf(a.engine, hex), { reason: 'digest-mismatch', foundBy: 'read' }, 'the block is listed for repair');
});
