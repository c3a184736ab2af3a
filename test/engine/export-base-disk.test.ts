/**
 * `snapshot export SNAP --from BASE`: the base must be a snapshot of the same disk (docs/protocol.md,
 * snapshot.export). A snapshot of another disk is refused alike whether named or given by id,
 * with a message that says whose it is.
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { snapshot } from '../helpers/engine';
import { openSmallEngine, smallDisk } from '../helpers/model';

const sameDisk = /^base s-\S+ \(sb\) is a snapshot of disk b, not of a: the base of an incremental export must be a snapshot of the same disk$/;

async function twoDisks(t: Test) {
  const f = await openSmallEngine(t);
  const a = await smallDisk(f, 'a', 2);
  const b = await smallDisk(f, 'b', 2);
  const sa = await snapshot(f.engine, a.id, 'sa');
  const sb = await snapshot(f.engine, b.id, 'sb');
  return { f, sa, sb, to: join(f.images, 'sa.bsnap') };
}

t.test('a base named after a snapshot of another disk is refused as not of the same disk', async (t) => {
  const { f, to } = await twoDisks(t);
  t.throws(() => f.engine.offsite.streams.startExport('sa', to, { base: 'sb' }), { code: 'SnapshotNotFound', message: sameDisk });
});

t.test('a base given by the id of a snapshot of another disk is refused as not of the same disk', async (t) => {
  const { f, sb, to } = await twoDisks(t);
  t.throws(() => f.engine.offsite.streams.startExport('sa', to, { base: sb.id }), { code: 'SnapshotNotFound', message: sameDisk });
});

t.test('a base name no snapshot has is still "no snapshot"', async (t) => {
  const { f, to } = await twoDisks(t);
  t.throws(() => f.engine.offsite.streams.startExport('sa', to, { base: 'nosuch' }), { code: 'SnapshotNotFound', message: 'no snapshot "nosuch"' });
});
