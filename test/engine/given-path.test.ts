/**
 * A disk registered through a symlink remembers the link (givenPath): once the link leads to
 * another file (a Firecracker jailer's rootfs link repointed, a libvirt external snapshot),
 * snapshots and rollbacks are refused rather than read the frozen old file and report nothing
 * changed, until `disk relocate` names the image.
 */
import { mkdtempSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

/** A raw image `a.raw` registered as disk `fc` through the link `fc.img`, snapshotted as `one`. */
async function linkedDisk(t: Test) {
  const f = await openEngine(t, { blockSize: BS });
  const a = makeImage(join(f.images, 'a.raw'), 4 * BS);
  fillBlock(a, 0, BS, 'a');
  const link = join(f.images, 'fc.img');
  symlinkSync('a.raw', link);
  const disk = await f.engine.addDisk({ path: link, name: 'fc' });
  await snapshot(f.engine, 'fc', 'one');
  return { ...f, a, link, disk };
}

function repoint(link: string, to: string): void {
  unlinkSync(link);
  symlinkSync(to, link);
}

t.test('disk add through a symlink keeps the real path and remembers the link', async (t) => {
  const { a, link, disk, engine, images } = await linkedDisk(t);
  t.match(disk, { path: a, givenPath: link });
  const plain = await engine.addDisk({ path: makeImage(join(images, 'b.raw'), BS) });
  t.equal(plain.givenPath, null, 'none when the path given is the real one');
});

t.test('a snapshot is refused once the link leads to another file, naming both and relocate', async (t) => {
  const { a, link, engine, images } = await linkedDisk(t);
  const b = makeImage(join(images, 'b.raw'), 4 * BS);
  repoint(link, 'b.raw');
  const job = await engine.waitJob(engine.startSnapshot('fc').id);
  t.match(job.error, {
    code: 'PathNotAllowed',
    message: `${link}, the path disk fc was registered by, and which led to ${a}, now resolves to ${b}, another file. ` +
      `If the disk's image is now ${b} (a storage move, an external snapshot, a retargeted link), point the disk at it: ` +
      `blocksnap disk relocate fc ${link} (its snapshots stay); otherwise point ${link} back at ${a}`,
  });
});

t.test('a rollback is refused once the link leads to another file', async (t) => {
  const { link, engine, images } = await linkedDisk(t);
  makeImage(join(images, 'b.raw'), 4 * BS);
  repoint(link, 'b.raw');
  t.throws(() => engine.startRollback('fc', 'one'), { code: 'PathNotAllowed', message: /blocksnap disk relocate fc / });
});

t.test('relocated through the link, the disk reads the file it now leads to', async (t) => {
  const { link, engine, images } = await linkedDisk(t);
  const b = makeImage(join(images, 'b.raw'), 4 * BS);
  fillBlock(b, 1, BS, 'b');
  repoint(link, 'b.raw');
  t.match(engine.relocateDisk('fc', link), { path: b, givenPath: link });
  const two = await snapshot(engine, 'fc', 'two');
  t.equal(two.changedBlocks, 2, 'block 0 emptied and block 1 written, read from the new file');
});

t.test('a link that was removed refuses nothing: the image is where it was', async (t) => {
  const { link, engine } = await linkedDisk(t);
  unlinkSync(link);
  t.match(await snapshot(engine, 'fc', 'two'), { status: 'available', changedBlocks: 0 });
});

t.test('a link repointed out of the image roots is refused without telling where it leads', async (t) => {
  const { a, link, engine } = await linkedDisk(t);
  const outside = mkdtempSync(join(tmpdir(), 'bs-outside-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  const secret = makeImage(join(outside, 'secret.raw'), BS);
  repoint(link, secret);
  const err = (await engine.waitJob(engine.startSnapshot('fc').id)).error!;
  t.match(err, { code: 'PathNotAllowed', message: `${link}, the path disk fc was registered by, no longer leads to its image ${a} but out of the image roots; ` +
    `point it back at ${a}, or point the disk at the image it should read (blocksnap disk relocate fc PATH; its snapshots stay)` });
  t.notMatch(err.message, outside);
});

t.test('a group rollback is refused once a member\'s link leads to another file', async (t) => {
  const { link, engine, images } = await linkedDisk(t);
  const g = await engine.groups.create({ disks: ['fc'], name: 'g' }).done;
  makeImage(join(images, 'b.raw'), 4 * BS);
  repoint(link, 'b.raw');
  await t.rejects(async () => engine.groups.rollback(g.name), { code: 'PathNotAllowed', message: /blocksnap disk relocate fc / });
});
