/**
 * Rollback and raw clone keep an image sparse below the block size: a block that holds a few
 * pages of data among zeros takes the space of those pages, not of the block, as the image did
 * when it was snapshotted (and as `cp --sparse=always` or `qemu-img convert` would leave it).
 */
import t from 'tap';
import { join } from 'node:path';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { MiB, allocatedBytes, makeImage, pattern, readAt, sha256File, writeAt } from '../helpers/images';

const PAGE = 4096;

/** Every 4 MiB block holds one data page, 20 KiB in: 64 KiB of data in 64 MiB. */
function scatteredPages(path: string): string {
  makeImage(path, 64 * MiB);
  for (let i = 0; i < 16; i++) writeAt(path, i * 4 * MiB + 5 * PAGE, pattern(`page${i}`, PAGE));
  return path;
}

t.test('rollback leaves the zero pages of a data block as holes', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = scatteredPages(join(images, 'a.raw'));
  const allocatedAtSnapshot = allocatedBytes(img);
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = await sha256File(img);
  // The guest fills the disk: every page of every block now holds data.
  for (let i = 0; i < 16; i++) writeAt(img, i * 4 * MiB, Buffer.alloc(4 * MiB, 0x40 + i));
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(await sha256File(img), want, 'bit-exact');
  t.ok(allocatedBytes(img) <= allocatedAtSnapshot + 16 * PAGE,
    `as sparse as when snapshotted (${allocatedBytes(img)} bytes allocated, ${allocatedAtSnapshot} then)`);
});

t.test('rollback of a block whose data moved within it punches the pages that are now zero', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = scatteredPages(join(images, 'b.raw'));
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const want = await sha256File(img);
  // Other pages of the same blocks get data; the snapshot's pages stay as they were.
  for (let i = 0; i < 16; i++) writeAt(img, i * 4 * MiB + MiB, Buffer.alloc(MiB, 0x60 + i));
  await finished(engine, engine.startRollback(disk.id, snap.id));
  t.equal(await sha256File(img), want, 'bit-exact');
  t.ok(allocatedBytes(img) <= 2 * 16 * PAGE, `the pages written since are holes again (${allocatedBytes(img)} bytes allocated)`);
});

t.test('a raw clone allocates only the pages that hold data', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = scatteredPages(join(images, 'c.raw'));
  // A short last block with data only at its very end.
  const odd = join(images, 'odd.raw');
  makeImage(odd, 8 * MiB + 3 * PAGE + 100);
  writeAt(odd, 8 * MiB + 3 * PAGE, pattern('tail', 100));
  for (const path of [img, odd]) {
    const disk = await engine.addDisk({ path });
    const snap = await snapshot(engine, disk.id);
    const out = join(images, `clone-of-${disk.name}.raw`);
    await finished(engine, engine.startClone(snap.id, out));
    t.equal(await sha256File(out), await sha256File(path), `${disk.name}: bit-exact`);
    t.ok(allocatedBytes(out) <= allocatedBytes(path) + 2 * PAGE,
      `${disk.name}: as sparse as the source (${allocatedBytes(out)} bytes allocated, source ${allocatedBytes(path)})`);
  }
  t.same(readAt(odd, 8 * MiB + 3 * PAGE, 100), pattern('tail', 100));
});

t.test('a raw clone of data pages that alternate with holes, after a long run of data, is bit-exact and as sparse', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'alt.raw'), 8 * MiB);
  writeAt(img, 0, pattern('run', 2 * MiB)); // long enough to go past the page cache
  for (let at = 2 * MiB + PAGE; at < 8 * MiB; at += 2 * PAGE) writeAt(img, at, pattern(`page${at}`, PAGE));
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const out = join(images, 'clone-of-alt.raw');
  await finished(engine, engine.startClone(snap.id, out));
  t.equal(await sha256File(out), await sha256File(img), 'bit-exact');
  // Give or take the filesystem's blocks that map 769 extents, written in another order.
  t.ok(allocatedBytes(out) <= allocatedBytes(img) + 16 * PAGE, `as sparse as the source (${allocatedBytes(out)} bytes allocated, source ${allocatedBytes(img)})`);
});
