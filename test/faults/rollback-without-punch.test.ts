/**
 * A raw rollback on a filesystem that cannot punch holes (bindfs here, a FUSE filesystem; ext2
 * with its own driver)
 * writes zeros where the snapshot has a ZERO block over data, and says so: it counted them as
 * holes punched, though they take space. Mounting needs root: the test skips, saying so, without it.
 */
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import type { RollbackResult } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, sha256File } from '../helpers/images';
import { mountedOrSkip } from './small-fs';

const BS = 64 * 1024;

t.test('a ZERO block over data is counted as zeroed, not as a hole punched', async (t) => {
  const fs = mountedOrSkip(t, 'bsp-', 'no-punch');
  if (fs === null) return;
  const engine = await Engine.open({ dataDir: join(fs.tempDir, 'data'), imageRoots: [fs.dir], blockSize: BS });
  t.teardown(() => engine.close());
  const img = makeImage(join(fs.dir, 'vm.raw'), 8 * BS);
  fillBlock(img, 0, BS, 'kept');
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = await sha256File(img);
  fillBlock(img, 3, BS, 'written since');
  const job = await finished(engine, engine.startRollback(disk.id, snap.id));
  t.match(job.result as RollbackResult, { holesPunched: 0, blocksZeroed: 1, blocksWritten: 0, blocksUnchanged: 7 });
  t.equal(await sha256File(img), want, 'bit-exact');
});
