import t from 'tap';
import { snapshotDetails, snapshotTable } from '../../src/cli/views';
import type { Snapshot, SnapshotConsistency } from '../../src/engine/types';

const snap: Snapshot = {
  id: 's-0123456789abcdef', diskId: 'd-0123456789abcdef', name: 'one', description: '', status: 'available', type: 'manual',
  parentId: null, createdAt: '2027-01-01T00:00:00.000Z', completedAt: '2027-01-01T00:00:01.000Z', sizeBytes: 4 << 20,
  blockSize: 4 << 20, blockCount: 1, logicalBytes: 4 << 20, changedBlocks: 1, newBytes: 4 << 20, uniqueBytes: 4 << 20,
  error: null, consistency: null, warnings: [], tags: {}, groupId: null, progress: null,
};

function consistencyLine(c: SnapshotConsistency | null): string | undefined {
  return snapshotDetails({ ...snap, consistency: c }).split('\n').find((l) => l.startsWith('consistency'));
}

// Typed as a Record over every value, so a consistency the engine gains must be added here too.
const EXPECTED: Record<SnapshotConsistency, RegExp> = {
  offline: /^consistency: +offline \(no VM was writing the image\)$/,
  crash: /^consistency: +crash-consistent \(a VM was writing the image\)$/,
  'point-in-time': /^consistency: +point-in-time \(a copy-on-write disk, taken between two of its writes\)$/,
};

t.test('each consistency is shown with its own explanation', async (t) => {
  const lines = new Set<string>();
  for (const [c, expected] of Object.entries(EXPECTED) as Array<[SnapshotConsistency, RegExp]>) {
    const line = consistencyLine(c);
    t.match(line, expected, c);
    lines.add(line!);
  }
  t.equal(lines.size, Object.keys(EXPECTED).length, 'no two share a line');
  t.notMatch(consistencyLine('point-in-time'), /offline|no VM/, 'a copy-on-write snapshot is not called offline');
});

t.test('no consistency line for a snapshot recorded before the field; an unknown value is shown as it came', async (t) => {
  t.equal(consistencyLine(null), undefined);
  t.match(consistencyLine('quiesced' as SnapshotConsistency), /^consistency: +quiesced$/);
});

t.test('the table shows the bare value', async (t) => {
  t.match(snapshotTable([{ ...snap, consistency: 'point-in-time' }]), /\bpoint-in-time$/m);
});

t.test('each warning of a snapshot is shown with its code', async (t) => {
  const warned = snapshotDetails({ ...snap, consistency: 'offline', warnings: [{ code: 'ImageHeldReadOnly', message: 'a QEMU process had /i/a.qcow2 open for reading only' }] });
  t.match(warned, /^warning: +a QEMU process had \/i\/a\.qcow2 open for reading only \[ImageHeldReadOnly\]$/m);
});
