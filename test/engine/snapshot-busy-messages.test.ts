/**
 * A snapshot held by an export or a running job cannot be deleted (SnapshotBusy). An export
 * never ends by itself, so the refusal names it and the command that stops it; a job is named
 * for what it is and how to see or stop it.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { engineWithSnapshot, finished } from '../helpers/engine';

const BLOCK = 64 * 1024;

async function exportedSnapshot(t: Test) {
  const f = await engineWithSnapshot(t, { blockSize: BLOCK, blocks: 2, filled: 1, disk: 'vm', snapshot: 'one' });
  f.engine.exports.setEndpoint('/run/test/nbd.sock');
  f.engine.exports.start('one', { name: 'vm-one' });
  return f;
}

t.test('snapshot delete of an exported snapshot names the export and how to stop it', async (t) => {
  const { engine, snap } = await exportedSnapshot(t);
  await t.rejects(engine.deleteSnapshot('one'), {
    code: 'SnapshotBusy',
    message: `snapshot ${snap.id} (one) is exported as vm-one; stop the export first (blocksnap export stop vm-one), then delete it`,
    details: { snapshotId: snap.id, exports: ['vm-one'] },
  });
});

t.test('disk remove --delete-snapshots with an exported snapshot names the export and how to stop it', async (t) => {
  const { engine } = await exportedSnapshot(t);
  await t.rejects(engine.removeDisk('vm', { deleteSnapshots: true }), {
    code: 'SnapshotBusy', message: /of disk vm is exported as vm-one; stop the export first \(blocksnap export stop vm-one\), then remove the disk$/,
  });
});

t.test('group delete with an exported member names the export and how to stop it', async (t) => {
  const { engine } = await exportedSnapshot(t);
  const g = await engine.groups.create({ disks: ['vm'], name: 'g' }).done;
  engine.exports.start(g.snapshotIds[0]!, { name: 'g-vm' });
  t.throws(() => engine.groups.delete('g'), {
    code: 'SnapshotBusy', message: /of group g is exported as g-vm; stop the export first \(blocksnap export stop g-vm\), then delete the group$/,
  });
});

t.test('snapshot delete of a snapshot a running clone reads says a job holds it and how to find it', async (t) => {
  const { engine, images } = await exportedSnapshot(t);
  await engine.exports.stop('vm-one');
  const clone = engine.startClone('one', join(images, 'copy.raw'));
  await t.rejects(engine.deleteSnapshot('one'), {
    code: 'SnapshotBusy', message: /is being read by a running job .*; delete it once it has ended \(`blocksnap job list` shows it/,
  });
  await finished(engine, clone);
  t.match(await engine.deleteSnapshot('one'), { name: 'one' }, 'deletable once the clone has ended');
});
