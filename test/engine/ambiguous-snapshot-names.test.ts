/**
 * One name on many snapshots (a policy names each disk's snapshot alike) is refused with the
 * snapshots it could mean, a few of them by id and disk, never a list as long as the catalog.
 */
import t from 'tap';
import { join } from 'node:path';
import { openEngine, snapshot } from '../helpers/engine';
import { makeImage } from '../helpers/images';
import { someOf } from '../../src/engine/ids';

const BS = 64 * 1024;

async function sameNameOnDisks(t: Parameters<typeof openEngine>[0], n: number) {
  const f = await openEngine(t, { blockSize: BS });
  for (let i = 0; i < n; i++) {
    const disk = await f.engine.addDisk({ path: makeImage(join(f.images, `vm${i}.raw`), 2 * BS), name: `vm${i}` });
    await snapshot(f.engine, disk.id, 'nightly');
  }
  return f;
}

t.test('a name on many snapshots is AmbiguousName naming five of them with their disks, and how many more', async (t) => {
  const { engine } = await sameNameOnDisks(t, 7);
  const err = (() => { try { engine.getSnapshot('nightly'); } catch (e) { return e as Error; } return null; })();
  t.match(err, { code: 'AmbiguousName' });
  t.match(err!.message, /^7 snapshots are named "nightly" \(s-[0-9a-f]{16} of disk vm\d, (s-[0-9a-f]{16} of disk vm\d, ){3}s-[0-9a-f]{16} of disk vm\d and 2 more\); use the id$/);
});

t.test('a name only other disks have is SnapshotNotFound naming a few of theirs', async (t) => {
  const { engine, images } = await sameNameOnDisks(t, 7);
  const other = await engine.addDisk({ path: makeImage(join(images, 'other.raw'), 2 * BS), name: 'other' });
  t.throws(() => engine.startRollback(other.id, 'nightly'),
    { code: 'SnapshotNotFound', message: /^disk other has no snapshot "nightly"; 7 snapshots of other disks have that name \((s-[0-9a-f]{16} of disk vm\d, ){4}s-[0-9a-f]{16} of disk vm\d and 2 more\)$/ });
});

t.test('someOf names at most the given number, then counts the rest', async (t) => {
  t.equal(someOf(['a', 'b']), 'a, b');
  t.equal(someOf(['a', 'b', 'c'], 2), 'a, b and 1 more');
  t.equal(someOf([]), '');
});
