/**
 * A qcow2 rollback writes its new image beside the disk, under a name of its own until it is
 * renamed over the disk. Whoever may write the disk's directory (a shared sticky directory) must
 * not be able to block that by putting something under the name first, and nothing of theirs
 * found there may be removed: the name is random per attempt, journaled, and the start removes
 * what a crash left under it, and under the fixed name of earlier versions, only when it is a
 * regular file the daemon made.
 */
import t, { type Test } from 'tap';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Catalog } from '../../src/catalog/catalog';
import { Engine } from '../../src/engine';
import { rollbackTempName } from '../../src/engine/image-access';
import { finished, snapshot } from '../helpers/engine';
import { compare, haveQemu, qemuImg, qemuIo } from '../helpers/qemu';

const BS = 64 * 1024;
const LEGACY = '.vm.qcow2.blocksnap-rollback';
const NOBODY = 65534;
const asRoot = process.geteuid?.() === 0;

async function qcow2Disk(t: Test) {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  let engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
  t.teardown(() => engine.close());
  const img = join(images, 'vm.qcow2');
  qemuImg('create', '-f', 'qcow2', img, '4M');
  qemuIo(img, 'qcow2', 'write -P 0x41 0 4M');
  await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, 'vm', 'base');
  const base = join(dir, 'base.raw');
  qemuImg('convert', '-f', 'qcow2', '-O', 'raw', img, base);
  qemuIo(img, 'qcow2', 'write -P 0x42 0 4M');
  const reopen = async (): Promise<Engine> => {
    await engine.close();
    engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: BS });
    return engine;
  };
  return { engine: () => engine, reopen, dataDir, images, img, snap, base };
}

/**
 * With the engine closed, the journal of a rollback cut off between the naming of its new image
 * and the rename; returns the journaled name. The caller reopens the engine.
 */
async function journalCutOffRollback(d: Awaited<ReturnType<typeof qcow2Disk>>): Promise<string> {
  await d.engine().close();
  const catalog = Catalog.open(d.dataDir, BS);
  const disk = catalog.allDisks().find((x) => x.name === 'vm')!;
  const tempName = '.vm.qcow2.blocksnap-rollback-00112233445566ff';
  catalog.txn(() => catalog.putDisk({ ...disk, pendingRollback: { snapshotId: d.snap.id, startedAt: new Date().toISOString(), jobId: 'j-0000000000000001', tempName } }));
  await catalog.close();
  return tempName;
}

t.test('something put under the old fixed temp name neither blocks a qcow2 rollback nor is removed', { skip: haveQemu() }, async (t) => {
  const d = await qcow2Disk(t);
  mkdirSync(join(d.images, LEGACY, 'x'), { recursive: true });
  await finished(d.engine(), d.engine().startRollback('vm', d.snap.id));
  t.equal(compare(d.img, 'qcow2', d.base, 'raw').status, 0, 'the disk was rolled back');
  t.ok(existsSync(join(d.images, LEGACY, 'x')), 'the directory put there is untouched');
  t.same(readdirSync(d.images).sort(), [LEGACY, 'vm.qcow2'], 'and the new image left no name behind');
});

t.test('a rollback\'s new image gets a fresh random name each time, a long one too', async (t) => {
  const a = rollbackTempName('/images/vm.qcow2');
  t.match(a, /^\.vm\.qcow2\.blocksnap-rollback-[0-9a-f]{16}$/);
  t.not(rollbackTempName('/images/vm.qcow2'), a);
  const long = `/images/${'x'.repeat(250)}.qcow2`;
  const b = rollbackTempName(long);
  t.match(b, /^\.blocksnap-rollback-[0-9a-f]{32}-[0-9a-f]{16}$/);
  t.not(rollbackTempName(long), b);
});

t.test('the start removes what a crash left under the journaled name, and under the old one only the daemon\'s own regular file', { skip: haveQemu() }, async (t) => {
  const d = await qcow2Disk(t);
  const tempName = await journalCutOffRollback(d);
  writeFileSync(join(d.images, tempName), 'the new image');
  writeFileSync(join(d.images, LEGACY), 'an older version\'s new image');
  await d.reopen();
  t.notOk(existsSync(join(d.images, tempName)), 'the journaled leftover is removed');
  t.notOk(existsSync(join(d.images, LEGACY)), 'so is the daemon\'s own file under the old fixed name');
});

t.test('the start leaves a file of another user under the old fixed name, and anything not a regular file', { skip: haveQemu() || (!asRoot && 'needs root to give a file to another user') }, async (t) => {
  const d = await qcow2Disk(t);
  const tempName = await journalCutOffRollback(d);
  writeFileSync(join(d.images, LEGACY), 'theirs');
  chownSync(join(d.images, LEGACY), NOBODY, NOBODY);
  mkdirSync(join(d.images, tempName));
  await d.reopen();
  t.equal(readFileSync(join(d.images, LEGACY), 'utf8'), 'theirs', 'another user\'s file is left where it is');
  t.ok(existsSync(join(d.images, tempName)), 'a directory under the journaled name is left too');
});
