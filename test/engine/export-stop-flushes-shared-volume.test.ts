/**
 * A writable export's stop answers once its clients' writes are durable, also while a job (a
 * snapshot, a flatten) holds the disk's volume too and so keeps it open past the stop: the
 * stop flushes it itself. What the map files hold is what a crash right after would keep.
 */
import t from 'tap';
import { join } from 'node:path';
import { served } from '../helpers/cow';
import { engineWithSnapshot } from '../helpers/engine';
import { pattern } from '../helpers/images';
import { countWrittenBytesNow as writtenBytes } from '../../src/native/volume';
import type { CowVolumes } from '../../src/engine/cow-volumes';

const BS = 64 * 1024;

t.test('export stop flushes the map bits of its clients\' writes while another lease keeps the volume open', async (t) => {
  const f = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'a', snapshot: 'base' });
  const d = await f.engine.cloneCow('base', 'c');
  const volumes = (f.engine as unknown as { volumes: CowVolumes }).volumes;
  const job = await volumes.acquire(d.id);
  t.teardown(() => job.release());
  const b = await served(f.engine, 'c');
  await b.write!(BS, pattern('unflushed', 8192), false);
  const maps = f.engine.getDisk('c').cow!.layers.map((l) => join(d.path, `${l}.map`));
  t.equal(writtenBytes(maps, d.sizeBytes), 0, 'unflushed, the bits are only in the volume\'s memory');
  await f.engine.exports.stop('c');
  t.ok(volumes.isOpen(d.id), 'the other lease keeps the volume open');
  t.equal(writtenBytes(maps, d.sizeBytes), 8192, 'yet the stop\'s answer came after the bits were on disk');
});
