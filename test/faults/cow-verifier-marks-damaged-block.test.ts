/**
 * A writable copy-on-write volume whose copy-ups checked only the granules they read verifies the
 * rest of those base blocks whole on an idle thread. Damage it finds there is a finding like any
 * reader's: the block is recorded for repair then, not only once a read needs the damaged part
 * (which may be never, or after the disk holding the good content has changed).
 */
import { join } from 'node:path';
import t from 'tap';
import { openEngine, snapshot } from '../helpers/engine';
import { served } from '../helpers/cow';
import { MiB, makeImage, pattern, writeAt } from '../helpers/images';
import { markOf } from '../helpers/damage-marks';
import { blockPath, flipByte, sha } from '../helpers/store-damage';

const BLOCK = MiB; // sixteen 64 KiB granules per block
const GRANULE = 64 * 1024;

t.test("a COW volume's background verifier marks a base block it finds damaged", async (t) => {
  const { engine, dataDir, images } = await openEngine(t, { blockSize: BLOCK });
  const image = makeImage(join(images, 'vm.raw'), 2 * BLOCK);
  for (let i = 0; i < 2; i++) writeAt(image, i * BLOCK, pattern(`b-${i}`, BLOCK));
  const disk = await engine.addDisk({ path: image, name: 'vm' });
  const s1 = await snapshot(engine, disk.id); // its scan writes the blocks' granule marks
  const cow = await engine.cloneCow(s1.id, 'cow');

  const rotten = sha(pattern('b-0', BLOCK));
  flipByte(blockPath(dataDir, rotten), 64 + 10 * GRANULE + 5); // in granule 10 of block 0
  const backend = await served(engine, cow.id);
  // A small write into granule 0: its copy-up reads and checks base granule 0 only.
  await backend.write!(100, pattern('guest', 512), false);
  t.equal(markOf(engine, rotten), undefined, 'the write did not meet the damage');

  const deadline = Date.now() + 30_000; // an idle-priority thread: slow on a busy host
  while (markOf(engine, rotten) === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.match(markOf(engine, rotten), { reason: 'digest-mismatch', foundBy: 'read' }, 'the verifier found the damage, and it is listed for repair');
});
