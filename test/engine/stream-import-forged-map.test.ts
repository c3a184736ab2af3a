/**
 * An incremental stream whose base is here, with the very content the stream names, but whose map
 * names a block that is neither in the stream nor in this store: the sender left out a block it
 * had to carry. That is StreamCorrupt, not BaseMissing, whose advice (import the base again)
 * would send the operator after a base that is present and intact.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StreamReader, StreamWriter, viewSha256 } from '../../src/stream/format';
import { engineWithSnapshot, finished, secondEngine } from '../helpers/engine';
import { makeImage } from '../helpers/images';

const BS = 64 * 1024;

t.test('an incremental map naming a block neither in the stream nor in the store is StreamCorrupt', async (t) => {
  const a = await engineWithSnapshot(t, { blockSize: BS, blocks: 4, filled: 2, disk: 'vm', snapshot: 's1' });
  await finished(a.engine, a.engine.offsite.streams.startExport('s1', join(a.images, 's1.bsnap')));
  const full = readFileSync(join(a.images, 's1.bsnap'));
  const b = await secondEngine(t, a, BS);
  writeFileSync(join(b.images, 's1.bsnap'), full);
  const disk = await b.engine.addDisk({ path: makeImage(join(b.images, 'b.raw'), 4 * BS) });
  await finished(b.engine, b.engine.offsite.streams.startImport(join(b.images, 's1.bsnap'), disk.id));

  let at = 0;
  const r = new StreamReader({ read: async (max) => { const out = full.subarray(at, at + max); at += out.length; return out; } });
  const h = await r.preamble();
  const view = await r.map(h.snapshot.blockCount);
  const forged = Buffer.from(view);
  forged.fill(0x77, 2 * 32, 3 * 32);
  const parts: Buffer[] = [];
  const w = new StreamWriter({ write: async (p) => { parts.push(...p.map((x) => Buffer.from(x))); } });
  await w.preamble({
    snapshot: { ...h.snapshot, id: 's-00000000000000f1', name: 'forged', parentId: h.snapshot.id },
    base: { id: h.snapshot.id, viewSha256: viewSha256(view) },
    exportedAt: h.exportedAt,
  });
  await w.map(forged);
  await w.end();
  writeFileSync(join(b.images, 'forged.bsnap'), Buffer.concat(parts));

  const job = await b.engine.waitJob(b.engine.offsite.streams.startImport(join(b.images, 'forged.bsnap'), disk.id).id);
  t.equal(job.error?.code, 'StreamCorrupt', job.error?.message ?? '');
  t.match(job.error?.message, /is neither in the stream nor in the local store/);
  t.throws(() => b.engine.getSnapshot('s-00000000000000f1'), { code: 'SnapshotNotFound' }, 'nothing committed');
});
