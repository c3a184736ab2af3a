/**
 * Sizes in human output carry their exact byte count: an odd geometry, or a resize of a few
 * bytes, is exactly what an operator checks, and rounded figures hide it.
 */
import t from 'tap';
import { diskDetails, rollbackView, snapshotDetails } from '../../src/cli/views';
import type { Disk, Job, Snapshot } from '../../src/engine/types';

const MiB = 1024 ** 2;

const snap: Snapshot = {
  id: 's-0123456789abcdef', diskId: 'd-0123456789abcdef', name: 'one', description: '', status: 'available', type: 'manual',
  parentId: null, createdAt: '2027-01-01T00:00:00.000Z', completedAt: '2027-01-01T00:00:01.000Z', sizeBytes: 4 * MiB + 1,
  blockSize: 4 * MiB, blockCount: 2, logicalBytes: 8 * MiB, changedBlocks: 2, newBytes: 8 * MiB, uniqueBytes: 8 * MiB,
  error: null, consistency: null, warnings: [], tags: {}, groupId: null, progress: null,
};

const disk: Disk = {
  id: 'd-0123456789abcdef', name: 'vm', path: '/images/vm.img', format: 'raw', sizeBytes: 1048579, imageBytes: 1048579,
  createdAt: '2027-01-01T00:00:00.000Z', headSnapshotId: null, snapshotCount: 1, pendingRollback: null, cow: null, formatSource: 'detected', givenPath: null, registeredBy: null,
};

function line(text: string, label: string): string | undefined {
  return text.split('\n').find((l) => l.startsWith(`${label}:`))?.replace(/^[^:]+: +/, '');
}

function rollbackJob(result: object): Job {
  return {
    id: 'j-0000000000000001', kind: 'rollback', state: 'succeeded', diskId: 'd-1', snapshotId: 's-1', target: null, doneBytes: 0, totalBytes: 0,
    progressUnit: 'bytes', startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:00:02.000Z', result, error: null,
  };
}

t.test('snapshot show gives the exact size of a snapshot one byte past its block', async (t) => {
  t.equal(line(snapshotDetails(snap), 'size'), '4 MiB (4194305 bytes), 2 blocks of 4 MiB');
});

t.test('a size under 1 KiB is shown once, already in bytes', async (t) => {
  t.equal(line(snapshotDetails({ ...snap, sizeBytes: 1, blockCount: 1 }), 'size'), '1 B, 1 block of 4 MiB');
});

t.test('a rollback across a resize of 3 bytes gives both sizes in bytes', async (t) => {
  const r = { diskId: 'd-1', snapshotId: 's-1', bytesWritten: 0, blocksWritten: 0, holesPunched: 0, blocksUnchanged: 2, newImage: false };
  t.match(rollbackView(rollbackJob({ ...r, sizeBytes: 5000001, previousSizeBytes: 5000004 })),
    /The disk's size went from 4\.77 MiB \(5000004 bytes\) back to the snapshot's 4\.77 MiB \(5000001 bytes\); what lay past byte 5000001 is gone\.$/);
});

t.test('a copy-on-write rollback to a snapshot of another size says the disk\'s size changed', async (t) => {
  const r = { diskId: 'd-1', snapshotId: 's-1', bytesWritten: 0, blocksWritten: 0, holesPunched: 0, blocksUnchanged: 0, newImage: false, discardedBytes: 0, discardedSinceSnapshotId: 's-2' };
  t.match(rollbackView(rollbackJob({ ...r, sizeBytes: 4194404, previousSizeBytes: 5000001 })),
    /^Rolled back copy-on-write disk .*nothing had been written since snapshot s-2\. The disk's size went from 4\.77 MiB \(5000001 bytes\) back to the snapshot's 4 MiB \(4194404 bytes\)/);
});

t.test('disk show says its size is the one last recorded', async (t) => {
  t.equal(line(diskDetails(disk), 'size'), '1 MiB (1048579 bytes) as last recorded (add, snapshot, rollback or relocate)');
  t.equal(line(diskDetails(disk), 'image size'), undefined, 'no second size while the image has the recorded one');
});

t.test('disk show gives the image\'s size now when it differs from the recorded one', async (t) => {
  t.equal(line(diskDetails({ ...disk, imageBytes: 58720256 }), 'image size'), '56 MiB (58720256 bytes) now');
});

t.test('disk show says when the image\'s size now cannot be read', async (t) => {
  t.equal(line(diskDetails({ ...disk, imageBytes: null }), 'image size'), 'unknown (the image cannot be read)');
});
