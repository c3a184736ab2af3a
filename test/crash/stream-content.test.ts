/**
 * The torture's reading of a stream file left by a killed export (stream-content.ts): a whole
 * stream gives its snapshot's content, one cut short anywhere is told, not taken as whole.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { engineWithSnapshot, finished } from '../helpers/engine';
import { streamContentSha } from './stream-content';

const BS = 64 * 1024;

async function exported(t: Test): Promise<{ stream: string; imageSha: string }> {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 3, disk: 'vm', snapshot: 's1' });
  const stream = join(a.images, 's1.bsnap');
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', stream));
  return { stream, imageSha: createHash('sha256').update(readFileSync(a.img)).digest('hex') };
}

t.test('a whole stream gives the content of the image its snapshot was taken of', async (t) => {
  const { stream, imageSha } = await exported(t);
  t.equal(await streamContentSha(stream), imageSha);
});

t.test('a stream cut short is not taken as whole', async (t) => {
  const { stream } = await exported(t);
  const size = statSync(stream).size;
  for (const cut of [size - 1, size - 40, Math.floor(size / 2), 100]) {
    truncateSync(stream, cut);
    await t.rejects(streamContentSha(stream), { code: 'StreamCorrupt' }, `cut at ${cut} of ${size} bytes`);
  }
});
