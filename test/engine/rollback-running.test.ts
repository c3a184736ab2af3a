/**
 * A disk's rollback journal is set while its rollback runs as well as after one stopped
 * unfinished; the disk says which (`pendingRollback.running`), so that a client does not tell an
 * operator to rerun or abandon a rollback that is still at work.
 */
import t from 'tap';
import { Catalog } from '../../src/catalog/catalog';
import { Engine } from '../../src/engine';
import { engineWithSnapshot, finished } from '../helpers/engine';
import { runningRollback } from '../helpers/held-rollback';

const BS = 64 * 1024;

t.test('a disk whose rollback runs shows its journal as running', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 'one' });
  const { rollback, release } = await runningRollback(t, f.engine, f.img, 'vm', 'one', BS);
  t.match(f.engine.getDisk('vm').pendingRollback, { snapshotId: f.snap.id, jobId: rollback.id, running: true });
  t.match(f.engine.listDisks()[0]!.pendingRollback, { running: true }, 'and so does the listing');
  release();
  await finished(f.engine, rollback);
  t.equal(f.engine.getDisk('vm').pendingRollback, null, 'its end clears the journal');
});

t.test('a disk whose rollback stopped unfinished shows its journal as not running', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 'one' });
  const disk = f.engine.getDisk('vm');
  await f.engine.close();
  // What a daemon killed while a raw rollback wrote leaves.
  const catalog = Catalog.open(f.dataDir, BS);
  catalog.txn(() => catalog.putDisk({ ...catalog.getDisk(disk.id)!, pendingRollback: { snapshotId: f.snap.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000ad' } }));
  await catalog.close();
  const engine = await Engine.open({ dataDir: f.dataDir, imageRoots: [f.images], blockSize: BS });
  t.teardown(() => engine.close());
  t.match(engine.getDisk('vm').pendingRollback, { jobId: 'j-00000000000000ad', running: false });
});
