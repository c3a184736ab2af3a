/**
 * A stream whose blocks are of another size than the store's cannot be imported there, whatever
 * the command line: the refusal is not a usage error (exit 2) but BlockSizeMismatch (exit 1),
 * saying that only a store with the stream's block size can take it.
 */
import t from 'tap';
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exitStatusFor } from '../../src/cli/exit-status';
import { finished, openEngine, secondEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const KiB = 1024;

t.test('importing a stream of 128 KiB blocks into a store of 64 KiB blocks fails with BlockSizeMismatch', async (t) => {
  const a = await openEngine(t, { blockSize: 128 * KiB });
  const imgA = makeImage(join(a.images, 'a.raw'), 2 * 128 * KiB);
  fillBlock(imgA, 0, 128 * KiB, 'a0');
  const diskA = await a.engine.addDisk({ path: imgA });
  const sA = await snapshot(a.engine, diskA.id);
  const stream = join(a.images, 's.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport(sA.id, stream));

  const hostB = await secondEngine(t, a, 64 * KiB);
  const b = hostB.engine;
  const dirB = dirname(hostB.dataDir);
  const diskB = await b.addDisk({ path: makeImage(join(dirB, 'images', 'b.raw'), 64 * KiB) });
  copyFileSync(stream, join(dirB, 'images', 's.bsnap'));
  const done = await b.waitJob(b.offsite.streams.startImport(join(dirB, 'images', 's.bsnap'), diskB.id).id);

  t.equal(done.state, 'failed');
  t.equal(done.error?.code, 'BlockSizeMismatch');
  t.match(done.error?.message, /has 131072-byte blocks; this store uses 65536-byte blocks .*only a store created with 131072-byte blocks .* can import it/);
  t.equal(exitStatusFor(done.error!.code), 1, 'not a usage error');
  t.equal(b.listSnapshots().length, 0, 'nothing was committed');
});
