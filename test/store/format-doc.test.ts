/**
 * docs/design.md's tables of the block and granule file formats give the format versions the
 * store writes: a tool written from the tables must write files the daemon reads.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { engineWithSnapshot } from '../helpers/engine';

const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'design.md'), 'utf8');

/** The version a format table of docs/design.md gives, from the section under `heading`. */
function documentedVersion(heading: string): number {
  const section = doc.slice(doc.indexOf(heading)).split(/\n### /)[0]!;
  const row = /^\| 8 \| 2 \| format version, `(\d+)` \|$/m.exec(section);
  if (row === null) throw new Error(`no format version row under ${heading}`);
  return Number(row[1]);
}

/** The format version (little-endian at offset 8) of the one file under `dir`'s fan-out directories. */
function writtenVersion(dir: string): number {
  const fanouts = readdirSync(dir).filter((n) => n !== 'tmp');
  const file = join(dir, fanouts[0]!, readdirSync(join(dir, fanouts[0]!))[0]!);
  return readFileSync(file).readUInt16LE(8);
}

async function storeWithOneBlock(t: Test): Promise<string> {
  // Two granules: a block of one has no marks to keep, and no granule file.
  const f = await engineWithSnapshot(t, { blockSize: 128 * 1024, blocks: 1, filled: 1, disk: 'vm', snapshot: 'one' });
  return f.dataDir;
}

t.test('the block file table gives the version block files are written with', async (t) => {
  const dataDir = await storeWithOneBlock(t);
  t.equal(documentedVersion('### Block file'), writtenVersion(join(dataDir, 'blocks')));
});

t.test('the granule file table gives the version granule files are written with', async (t) => {
  const dataDir = await storeWithOneBlock(t);
  t.equal(documentedVersion('### Granule file'), writtenVersion(join(dataDir, 'granules')));
});
