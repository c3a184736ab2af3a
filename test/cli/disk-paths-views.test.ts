/**
 * What the CLI tells of a disk's paths: the path it was given by when that is a symlink, and a
 * relocate help that says the snapshots stay and what is refused.
 */
import t from 'tap';
import { buildProgram } from '../../src/cli/main';
import { diskDetails } from '../../src/cli/views';
import type { Disk } from '../../src/engine/types';

const disk: Disk = {
  id: 'd-0123456789abcdef', name: 'fc', path: '/images/a.raw', format: 'raw', sizeBytes: 1 << 20, imageBytes: 1 << 20, createdAt: '2026-01-01T00:00:00.000Z',
  headSnapshotId: null, snapshotCount: 0, pendingRollback: null, cow: null, formatSource: 'detected', givenPath: null, registeredBy: null,
};

function relocateHelp(): string {
  const cmd = buildProgram().commands.find((c) => c.name() === 'disk')!.commands.find((c) => c.name() === 'relocate')!;
  let out = '';
  cmd.configureOutput({ writeOut: (s) => { out += s; } });
  cmd.outputHelp();
  return out.replace(/\s+/g, ' ');
}

t.test('disk show names the path a disk was given by beside its real path', async (t) => {
  t.match(diskDetails({ ...disk, givenPath: '/images/fc.img' }), /^given path: +\/images\/fc\.img \(leads to path; checked before every snapshot and rollback\)$/m);
});

t.test('disk show has no given path line for a disk registered by its real path', async (t) => {
  t.notMatch(diskDetails(disk), /given path/);
});

t.test('disk relocate --help says the snapshots stay and when it is refused', async (t) => {
  const help = relocateHelp();
  t.match(help, 'The snapshots stay valid');
  t.match(help, 'must pass every check of disk add');
  t.match(help, "have the disk's format (NotAnImage otherwise)");
  t.match(help, 'Refused while a job runs on the disk (DiskBusy) and while a rollback of it is unfinished (RollbackIncomplete)');
});
