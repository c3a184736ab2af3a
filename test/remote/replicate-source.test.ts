/**
 * What `replicate` says when its source names nothing here: the source may be a snapshot or a
 * disk, so the refusal names both.
 */
import t from 'tap';
import { MemoryStore } from './memory-store';
import { openHost } from './memory-engine';

t.test('a source that is neither a snapshot nor a disk is refused naming both', async (t) => {
  const h = await openHost(t, new MemoryStore());
  t.throws(() => h.engine.offsite.replication.startReplicate('nosuch', 'off'), { code: 'SnapshotNotFound', message: 'no snapshot or disk "nosuch"' });
});

t.test('a snapshot id that names nothing is refused as a snapshot', async (t) => {
  const h = await openHost(t, new MemoryStore());
  t.throws(() => h.engine.offsite.replication.startReplicate('s-0123456789abcdef', 'off'), { code: 'SnapshotNotFound', message: 'no snapshot "s-0123456789abcdef"' });
});
