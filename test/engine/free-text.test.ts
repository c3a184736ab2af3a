/**
 * Descriptions and tag values are counted in characters, as the messages say (an emoji is one,
 * not two UTF-16 units), and refuse control characters: an escape sequence stored in a
 * description reached every operator's terminal through `snapshot show`, `group show`,
 * `policy show`, and a line break split the CLI's `key: value` lines.
 */
import t from 'tap';
import { finished, openEngine } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';
import { join } from 'node:path';
import type { Snapshot } from '../../src/engine/types';

const BS = 64 * 1024;
const EMOJI = '\u{1F600}';

async function oneDisk(t: Parameters<typeof openEngine>[0]) {
  const f = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(f.images, 'vm.raw'), 2 * BS);
  fillBlock(img, 0, BS, 'vm-0');
  await f.engine.addDisk({ path: img, name: 'vm' });
  return f;
}

const controls = ['x\u001b[31mred', 'line1\nline2', 'tab\there', 'csi\u009b2J', 'del\u007f'];

t.test('a description with a control character is refused on every object that takes one', async (t) => {
  const { engine } = await oneDisk(t);
  engine.policies.create({ name: 'p', hours: [1] });
  for (const d of controls) {
    t.throws(() => engine.startSnapshot('vm', { description: d }), { code: 'InvalidArgument', message: /without control characters/ }, `snapshot: ${JSON.stringify(d)}`);
    t.throws(() => engine.groups.create({ disks: ['vm'], name: 'g', description: d }), { code: 'InvalidArgument' }, `group: ${JSON.stringify(d)}`);
    t.throws(() => engine.policies.create({ name: 'q', hours: [1], description: d }), { code: 'InvalidArgument' }, `policy: ${JSON.stringify(d)}`);
    t.throws(() => engine.policies.update('p', { description: d }), { code: 'InvalidArgument' }, `policy update: ${JSON.stringify(d)}`);
  }
  t.same(engine.listSnapshots('vm'), [], 'nothing was created');
});

t.test('a description of 1024 characters is taken whatever their UTF-16 length, 1025 are not', async (t) => {
  const { engine } = await oneDisk(t);
  const s = (await finished(engine, engine.startSnapshot('vm', { description: EMOJI.repeat(1024) }))).result as Snapshot;
  t.equal(s.description, EMOJI.repeat(1024));
  t.throws(() => engine.startSnapshot('vm', { description: EMOJI.repeat(1025) }), { code: 'InvalidArgument', message: /at most 1024 characters/ });
});

t.test('a tag value of 256 characters is taken whatever their UTF-16 length, 257 are not', async (t) => {
  const { engine } = await oneDisk(t);
  const s = (await finished(engine, engine.startSnapshot('vm'))).result as Snapshot;
  t.equal(engine.tagSnapshot(s.id, { emo: EMOJI.repeat(256) }).tags.emo, EMOJI.repeat(256));
  t.throws(() => engine.tagSnapshot(s.id, { emo: EMOJI.repeat(257) }), { code: 'InvalidArgument', message: /at most 256 characters/ });
  t.throws(() => engine.tagSnapshot(s.id, { esc: 'a\u009bb' }), { code: 'InvalidArgument' }, 'a C1 control too');
});
