/**
 * Disks cloned before layer map version 2 have version 1 layers (64 KiB granules, docs/design.md
 * "Copy-on-write disks"). After an upgrade they must go on reading and taking writes as they
 * were, their snapshots must hold those writes, and the new top a snapshot makes is version 2.
 */
import t from 'tap';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../../src/engine';
import {
  COW_GRANULE_COUNT_OFFSET, COW_GRANULE_SIZE, COW_GRANULE_SIZE_OFFSET, COW_GRANULE_SIZE_V1, COW_MAP_HEADER_SIZE, COW_MAP_VERSION,
  COW_MAP_VERSION_1, COW_VERSION_OFFSET,
} from '../../src/store/cow-format';
import { cloned, readAll, served } from '../helpers/cow';
import { openEngine, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, pattern } from '../helpers/images';

const BS = 256 * 1024;
const BLOCKS = 4;

/** An empty layer map rewritten as version 1 made it: same header but for version, granule and count. */
function rewriteAsVersion1(mapPath: string, size: number): void {
  const header = Buffer.from(readFileSync(mapPath).subarray(0, COW_MAP_HEADER_SIZE));
  const granules = Math.ceil(size / COW_GRANULE_SIZE_V1);
  header.writeUInt16LE(COW_MAP_VERSION_1, COW_VERSION_OFFSET);
  header.writeUInt32LE(COW_GRANULE_SIZE_V1, COW_GRANULE_SIZE_OFFSET);
  header.writeBigUInt64LE(BigInt(granules), COW_GRANULE_COUNT_OFFSET);
  writeFileSync(mapPath, Buffer.concat([header, Buffer.alloc(Math.ceil(granules / 8))]));
}

function mapHeader(engine: Engine, disk: string): { version: number; granule: number } {
  const d = engine.getDisk(disk);
  const top = d.cow!.layers[d.cow!.layers.length - 1]!;
  const bytes = readFileSync(join(d.path, `${top}.map`));
  return { version: bytes.readUInt16LE(COW_VERSION_OFFSET), granule: bytes.readUInt32LE(COW_GRANULE_SIZE_OFFSET) };
}

/** A snapshot "base" of a 4-block disk, and a COW clone "c" of it whose layer is version 1, served. */
async function upgraded(t: Parameters<typeof openEngine>[0]) {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = makeImage(join(images, 'a.raw'), BLOCKS * BS);
  for (let i = 0; i < BLOCKS; i++) fillBlock(img, i, BS, `base-${i}`);
  const disk = await engine.addDisk({ path: img, name: 'a' });
  await snapshot(engine, disk.id, 'base');
  const c = await engine.cloneCow('base', 'c');
  const data = join(c.path, `${c.cow!.layers[0]}.data`);
  rewriteAsVersion1(join(c.path, `${c.cow!.layers[0]}.map`), c.sizeBytes);
  return { engine, images, data, expected: readFileSync(img), b: await served(engine, 'c') };
}

t.test('a version 1 layer copies up its 64 KiB granule and its snapshot holds the write', async (t) => {
  const { engine, images, data, expected, b } = await upgraded(t);
  t.same(mapHeader(engine, 'c'), { version: COW_MAP_VERSION_1, granule: COW_GRANULE_SIZE_V1 });
  t.ok((await readAll(b)).equals(expected), 'reads as the base');
  const w = pattern('w1', 4096);
  await b.write!(BS + 8192, w, true);
  w.copy(expected, BS + 8192);
  t.ok(statSync(data).blocks * 512 >= COW_GRANULE_SIZE_V1, 'the whole 64 KiB granule went to the layer');
  t.ok((await readAll(b)).equals(expected), 'reads the write over the base');
  const one = await snapshot(engine, 'c', 'one');
  t.ok((await cloned(engine, images, one, 'one.raw')).equals(expected), 'the snapshot holds the write');
});

t.test('the top a snapshot of such a disk makes is version 2, and later snapshots hold writes of both', async (t) => {
  const { engine, images, expected, b } = await upgraded(t);
  const w1 = pattern('w1', 4096);
  await b.write!(BS + 8192, w1, true);
  w1.copy(expected, BS + 8192);
  await snapshot(engine, 'c', 'one');
  t.same(mapHeader(engine, 'c'), { version: COW_MAP_VERSION, granule: COW_GRANULE_SIZE });
  const w2 = pattern('w2', 4096);
  await b.write!(2 * BS + 4096, w2, true);
  w2.copy(expected, 2 * BS + 4096);
  t.ok((await readAll(b)).equals(expected), 'writes to the new top read back');
  const two = await snapshot(engine, 'c', 'two');
  t.ok((await cloned(engine, images, two, 'two.raw')).equals(expected), 'its snapshot holds both writes');
});
