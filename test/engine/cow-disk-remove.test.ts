/**
 * Removing a copy-on-write disk deletes its overlay files, the only copy of what was written to
 * it since its last snapshot; the same command leaves an image disk's file alone. So a COW disk
 * holding such writes is removed only when the operator says to discard them.
 */
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { served } from '../helpers/cow';
import { engineWithSnapshot, snapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';

const BS = 64 * 1024;

async function writtenClone(t: Test) {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 1, disk: 'a', snapshot: 'base' });
  const d = await f.engine.cloneCow('base', 'c');
  const b = await served(f.engine, 'c');
  await b.write!(BS, pattern('unsaved', 4096), true);
  await f.engine.exports.stop('c');
  return { ...f, d };
}

t.test('disk remove of a COW disk holding writes no snapshot has is refused, and keeps the disk and its overlay', async (t) => {
  const { engine, d } = await writtenClone(t);
  await t.rejects(engine.removeDisk('c'), {
    code: 'DiskHasWrites', message: /holds 4 KiB written since it was cloned.*disk remove --discard-writes/, details: { diskId: d.id, writtenBytes: 4096, overlayBytes: 4096 },
  });
  t.match(engine.getDisk('c'), { cow: { overlayBytes: 4096, writtenBytes: 4096 } });
  t.ok(existsSync(d.path), 'the overlay directory is still there');
});

t.test('disk remove --discard-writes removes a COW disk with its unsnapshotted writes', async (t) => {
  const { engine, d } = await writtenClone(t);
  t.match(await engine.removeDisk('c', { discardWrites: true }), { name: 'c' });
  t.notOk(existsSync(d.path), 'the overlay directory is gone');
});

t.test('a COW disk whose writes are all in a snapshot is removed without --discard-writes', async (t) => {
  const { engine } = await writtenClone(t);
  await snapshot(engine, 'c', 'saved');
  await t.rejects(engine.removeDisk('c'), { code: 'DiskHasSnapshots' }, 'its snapshot still guards it');
  t.match(await engine.removeDisk('c', { deleteSnapshots: true }), { name: 'c' });
});

t.test('disk remove of a COW disk whose only writes are a TRIM and zeroes with unmap is refused: they take no space, yet change what it reads', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 4, disk: 'a', snapshot: 'base' });
  const d = await f.engine.cloneCow('base', 'c');
  const b = await served(f.engine, 'c');
  await b.trim!(0, BS, false);
  await b.zero!(BS, BS, true, false);
  await f.engine.exports.stop('c');
  t.match(f.engine.getDisk('c'), { cow: { overlayBytes: 0, writtenBytes: 2 * BS } }, 'the map counts what the data files do not');
  await t.rejects(f.engine.removeDisk('c'), {
    code: 'DiskHasWrites', message: /holds 128 KiB written since it was cloned/, details: { diskId: d.id, writtenBytes: 2 * BS, overlayBytes: 0 },
  });
});
