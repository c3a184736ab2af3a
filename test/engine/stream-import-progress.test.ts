/**
 * A stream imported through the socket (stdin of `snapshot import -i -`) has no size up front. Its
 * progress counts the block bytes received against those the stream carries, known from its map
 * and the base it names; before, the total was the bytes read so far, so a running import always
 * read 100%, a stalled one too.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InChannel } from '../../src/engine/streams';
import { engineWithSnapshot, finished, secondEngine } from '../helpers/engine';
import { makeImage } from '../helpers/images';

const BS = 64 * 1024;

t.test('a stream import through a channel reports its received block bytes against those the stream carries', async (t) => {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 8, filled: 8, disk: 'vm', snapshot: 's1' });
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', join(a.images, 's1.bsnap')));
  const bytes = readFileSync(join(a.images, 's1.bsnap'));
  const b = await secondEngine(t, a, BS);
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 8 * BS) });

  // Serves the first half of the stream, then holds the rest until `release`.
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  let at = 0;
  const half = bytes.length >> 1;
  const channel: InChannel = {
    async read(max) {
      if (at === half) await held;
      const end = Math.min(at < half ? half : bytes.length, at + max);
      const out = bytes.subarray(at, end);
      at = end;
      return out;
    },
    close() {},
  };
  const job = b.engine.offsite.streams.startImport(channel, disk.id);
  while (at < half) await new Promise((r) => setTimeout(r, 5));
  // The blocks of the first half are stored and reported at the engine's pace: on a loaded
  // machine that takes a while; the rest stays held, so the job cannot end meanwhile.
  for (let i = 0; i < 800 && b.engine.getJob(job.id).doneBytes === 0; i++) await new Promise((r) => setTimeout(r, 25));
  const mid = b.engine.getJob(job.id);
  t.equal(mid.totalBytes, 8 * BS, 'the total is the eight blocks the stream carries');
  t.ok(mid.doneBytes > 0 && mid.doneBytes < mid.totalBytes, `part of it is done (${mid.doneBytes} of ${mid.totalBytes})`);
  release();
  const done = await finished(b.engine, job);
  t.equal(done.doneBytes, done.totalBytes, 'all of it at the end');
});
