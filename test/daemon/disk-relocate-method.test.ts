/**
 * `disk.relocate` over the socket: the daemon points the disk at the moved image and the next
 * snapshot, through the same connection, is an increment over the disk's chain.
 */
import { renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Disk, Job, Snapshot } from '../../src/engine/types';
import { snapshottedDisk } from '../helpers/snapshotted-disk';

t.test('disk.relocate answers the disk at its new path, and its chain goes on', async (t) => {
  const { c, image, layout, s1 } = await snapshottedDisk(t, { label: 'r', blocks: 2 });
  const moved = join(layout.imageRoot, 'vm-moved.img');
  renameSync(image, moved);
  symlinkSync(moved, image);
  const d = await c.call<Disk>('disk.relocate', { disk: 'vm', path: moved });
  t.match(d, { name: 'vm', path: moved, givenPath: null, snapshotCount: 1 });
  const s2 = (await c.call<Job>('snapshot.create', { disk: 'vm', wait: true })).result as Snapshot;
  t.match(s2, { parentId: s1.id, changedBlocks: 0 });
});
