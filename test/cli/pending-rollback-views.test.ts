/**
 * How `disk show` and `disk list` render a disk's rollback journal. A journal is set while its
 * rollback runs as well as after it stopped unfinished; only the second wants the operator to
 * rerun or abandon it, and telling a running one so sends them after a disk that is being repaired.
 */
import t from 'tap';
import { diskDetails, diskTable } from '../../src/cli/views';
import type { Disk } from '../../src/engine/types';

const journal = { snapshotId: 's-0123456789abcdef', startedAt: '2026-01-01T00:00:00.000Z', jobId: 'j-0123456789abcdef' };

function diskWith(pendingRollback: Disk['pendingRollback']): Disk {
  return {
    id: 'd-0123456789abcdef', name: 'vm', path: '/images/vm.img', format: 'raw', sizeBytes: 1 << 20, imageBytes: 1 << 20, createdAt: '2026-01-01T00:00:00.000Z',
    headSnapshotId: null, snapshotCount: 1, pendingRollback, cow: null, formatSource: 'detected', givenPath: null, registeredBy: null,
  };
}

const flat = (s: string): string => s.replace(/\s+/g, ' ');

t.test('disk show names both ways out of an interrupted rollback', async (t) => {
  const shown = flat(diskDetails(diskWith({ ...journal, running: false })));
  t.match(shown, 'rollback: INTERRUPTED rollback to s-0123456789abcdef (job j-0123456789abcdef)');
  t.match(shown, 'blocksnap rollback vm s-0123456789abcdef');
  t.match(shown, 'blocksnap rollback vm --abandon');
});

t.test('disk show says a running rollback runs, and offers no way out of it', async (t) => {
  const shown = flat(diskDetails(diskWith({ ...journal, running: true })));
  t.match(shown, 'rollback: rollback to s-0123456789abcdef running (job j-0123456789abcdef)');
  t.notMatch(shown, /INTERRUPTED|--abandon|rerun/);
});

t.test('disk show reads a journal without running (an earlier daemon) as interrupted', async (t) => {
  const { running: _r, ...earlier } = { ...journal, running: false };
  t.match(flat(diskDetails(diskWith(earlier as Disk['pendingRollback']))), 'INTERRUPTED rollback');
});

t.test('disk list marks an interrupted rollback as interrupted', async (t) => {
  t.match(diskTable([diskWith({ ...journal, running: false })]), '/images/vm.img  (rollback interrupted)');
});

t.test('disk list marks a running rollback as running', async (t) => {
  const listed = diskTable([diskWith({ ...journal, running: true })]);
  t.match(listed, '/images/vm.img  (rollback running)');
  t.notMatch(listed, 'interrupted');
});
