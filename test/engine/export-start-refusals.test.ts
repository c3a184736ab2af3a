/**
 * What `export start` answers when it cannot serve what it was asked to: the refusal names the
 * real obstacle (the disk is served already, the ref is a snapshot), not a side effect of it.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { fillBlock, makeImage } from '../helpers/images';
import { KiB64, openSmallEngine } from '../helpers/model';
import { snapshot } from '../helpers/engine';

async function served(t: Test) {
  const f = await openSmallEngine(t);
  const img = makeImage(join(f.images, 'p.raw'), 2 * KiB64);
  fillBlock(img, 0, KiB64, 'p-0');
  await f.engine.addDisk({ path: img, name: 'p' });
  const p1 = await snapshot(f.engine, 'p', 'p1');
  const c3 = await f.engine.cloneCow('p1', 'c3');
  f.engine.exports.setEndpoint('/nonexistent/nbd.sock');
  return { ...f, p1, c3 };
}

t.test('a second writable export of a disk is DiskExported, also when it would take the same default name', async (t) => {
  const { engine, c3 } = await served(t);
  await engine.exports.startDisk('c3');
  // The default export name is the disk's, so the name is taken too; the disk is what refuses.
  await t.rejects(engine.exports.startDisk('c3'), { code: 'DiskExported', message: /disk c3 is already exported as c3/, details: { export: 'c3' } });
  await t.rejects(engine.exports.startDisk(c3.id, { name: 'other' }), { code: 'DiskExported' });
  t.same(engine.exports.list().map((e) => e.name), ['c3'], 'still the one export');
});

t.test('a writable export under a name another export has is NameTaken', async (t) => {
  const { engine } = await served(t);
  engine.exports.start('p1', { name: 'taken' });
  await t.rejects(engine.exports.startDisk('c3', { name: 'taken' }), { code: 'NameTaken', message: /an export named "taken" is already served/ });
});

t.test('export start SNAPSHOT --writable says it names a snapshot, and how to serve one writable', async (t) => {
  const { engine, p1 } = await served(t);
  await t.rejects(engine.exports.startDisk('p1'), {
    code: 'DiskNotFound',
    message: /^no disk "p1"; p1 is a snapshot of disk p: .*clone p1 --cow --name NAME.*--writable/,
    details: { snapshotId: p1.id },
  });
  await t.rejects(engine.exports.startDisk(p1.id), { code: 'DiskNotFound', message: /is a snapshot of disk p/ }, 'by id too');
  await t.rejects(engine.exports.startDisk('nothing'), { code: 'DiskNotFound', message: /^no disk "nothing"$/ }, 'a ref that names nothing stays plain');
});
