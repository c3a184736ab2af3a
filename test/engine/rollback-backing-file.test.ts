/**
 * A golden image under linked clones: a registered disk that is the backing file of other
 * registered disks (qcow2 overlays over it). Rolling it back would change what their guests see,
 * under the data they wrote on top of it, so it is refused (ImageIsBackingFile) naming them,
 * unless forced. Judged with qemu-img on real files.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';

const missing = haveQemu();
if (missing) t.plan(0, missing);

/**
 * A golden image in `format`, snapshotted as `g-old` and then rewritten, under two registered
 * qcow2 overlays (vm1, vm2) that each wrote their first MiB.
 */
async function golden(t: Test, format: 'raw' | 'qcow2') {
  const { engine, images } = await openEngine(t);
  const gold = join(images, `gold.${format}`);
  qemuImg('create', '-q', '-f', format, gold, '8M');
  qemuIo(gold, format, 'write -P 0x11 0 8M');
  const overlays = ['vm1', 'vm2'].map((name) => {
    const path = join(images, `${name}.qcow2`);
    qemuImg('create', '-q', '-f', 'qcow2', '-b', `gold.${format}`, '-F', format, path);
    qemuIo(path, 'qcow2', 'write -P 0x22 0 1M');
    return path;
  });
  const goldDisk = await engine.addDisk({ path: gold, name: 'gold' });
  for (const [k, path] of overlays.entries()) await engine.addDisk({ path, name: `vm${k + 1}` });
  const old = await snapshot(engine, goldDisk.id, 'g-old');
  qemuIo(gold, format, 'write -P 0x33 0 8M');
  return { engine, images, gold, goldDisk, old, overlays };
}

for (const format of ['qcow2', 'raw'] as const) {
  t.test(`rollback of a ${format} golden image under registered overlays is refused, naming them`, async (t) => {
    const { engine, gold, goldDisk, old } = await golden(t, format);
    const before = readFileSync(gold);
    t.throws(() => engine.startRollback(goldDisk.id, old.id), {
      code: 'ImageIsBackingFile',
      message: new RegExp(`${gold} is the backing file of disks vm1, vm2: .*--force`),
      details: { path: gold, dependents: ['vm1', 'vm2'] },
    });
    t.ok(readFileSync(gold).equals(before), 'the image is byte-identical');
    t.equal(engine.getDisk(goldDisk.id).pendingRollback, null, 'nothing was journaled');
  });
}

t.test('a forced rollback of a golden image goes through, and its overlays read the rolled-back content', async (t) => {
  const { engine, images, goldDisk, old, overlays } = await golden(t, 'qcow2');
  const job = await finished(engine, engine.startRollback(goldDisk.id, old.id, { force: true }));
  t.equal(job.state, 'succeeded');
  const want = join(images, 'want.raw');
  qemuImg('create', '-q', '-f', 'raw', want, '8M');
  qemuIo(want, 'raw', 'write -P 0x22 0 1M', 'write -P 0x11 1M 7M');
  t.equal(compare(overlays[0]!, 'qcow2', want, 'raw').status, 0, 'vm1 reads its own MiB over the old golden content');
});

t.test('a group rollback with a golden image among its members is refused before any member starts', async (t) => {
  const { engine, goldDisk } = await golden(t, 'qcow2');
  const { done } = engine.groups.create({ disks: ['vm1', 'gold'], name: 'g1' });
  const g = await done;
  t.throws(() => engine.groups.rollback(g.id), { code: 'ImageIsBackingFile', details: { dependents: ['vm1', 'vm2'] } });
  t.same(engine.listJobs().filter((j) => j.kind === 'rollback'), [], 'no member rollback started');
  t.equal(engine.getDisk(goldDisk.id).pendingRollback, null, 'nothing was journaled');
});
