import { randomFillSync } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { verifyBlocks } from '../../src/native';
import { findBlock, readBlock, readBlockUnhashed, sha256, writeBlock } from '../../src/store/block-io';
import { watchStoreDamage } from '../../src/store/damage-reports';
import { blockPath } from '../../src/store/format';

function store(t: Test): string {
  const dir = join(t.testdir(), 'blocks');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  return dir;
}

t.test('a block written from TypeScript is the native format: the native verifier accepts it', async (t) => {
  const dir = store(t);
  const data = randomFillSync(Buffer.alloc(1024 * 1024 + 17));
  const hex = sha256(data).toString('hex');
  t.equal(await writeBlock(dir, hex, data), 'stored');
  t.equal(await writeBlock(dir, hex, data), 'present', 'a present block is left alone');
  t.same(readdirSync(join(dir, 'tmp')), [], 'no temp file left');
  const r = await verifyBlocks({ storeDir: dir, digests: Buffer.from(hex, 'hex') });
  t.same(r, { checked: 1, problems: [] });
  t.ok((await readBlock(dir, hex)).equals(data));
});

t.test('reading refuses a missing, truncated or altered block with the store\'s codes', async (t) => {
  const dir = store(t);
  const data = randomFillSync(Buffer.alloc(65536));
  const hex = sha256(data).toString('hex');
  await t.rejects(readBlock(dir, hex), { code: 'BlockMissing' });
  await writeBlock(dir, hex, data);
  const path = blockPath(dir, hex);
  const good = readFileSync(path);
  const flipped = Buffer.from(good);
  flipped[100] ^= 1;
  writeFileSync(path, flipped);
  await t.rejects(readBlock(dir, hex), { code: 'DigestMismatch' });
  writeFileSync(path, good.subarray(0, good.length - 1));
  await t.rejects(readBlock(dir, hex), { code: 'BlockCorrupt' });
  const badMagic = Buffer.from(good);
  badMagic[0] = 0;
  writeFileSync(path, badMagic);
  await t.rejects(readBlock(dir, hex), { code: 'BlockCorrupt' });
  await t.rejects(writeBlock(dir, '00'.repeat(32), data), { code: 'Internal' }, 'data is never stored under a wrong digest');
});

/** A block stored in a fresh store, then a byte of its payload flipped in its file, which keeps its size. */
async function flippedBlock(t: Test): Promise<{ dir: string; hex: string; data: Buffer; path: string; flipped: Buffer }> {
  const dir = store(t);
  const data = randomFillSync(Buffer.alloc(65536));
  const hex = sha256(data).toString('hex');
  await writeBlock(dir, hex, data);
  const path = blockPath(dir, hex);
  const flipped = readFileSync(path);
  flipped[100] ^= 1;
  writeFileSync(path, flipped);
  return { dir, hex, data, path, flipped };
}

t.test('an unhashed read checks the header but leaves the digest to the receiver', async (t) => {
  const { dir, hex, path, flipped } = await flippedBlock(t);
  t.ok((await readBlockUnhashed(dir, hex)).equals(flipped.subarray(64)), 'the payload as stored, unhashed');
  writeFileSync(path, flipped.subarray(0, flipped.length - 1));
  await t.rejects(readBlockUnhashed(dir, hex), { code: 'BlockCorrupt' });
  await t.rejects(readBlockUnhashed(dir, '00'.repeat(32)), { code: 'BlockMissing' });
});

/** A block stored, then its file moved aside for something else to take its name; returns [hex, data, aside]. */
async function movedAside(dir: string): Promise<[string, Buffer, string]> {
  const data = randomFillSync(Buffer.alloc(65536));
  const hex = sha256(data).toString('hex');
  await writeBlock(dir, hex, data);
  const aside = join(dirname(dir), 'aside');
  renameSync(blockPath(dir, hex), aside);
  return [hex, data, aside];
}

t.test('a FIFO in place of a block is read as corrupt, without waiting for a writer', async (t) => {
  const dir = store(t);
  const [hex] = await movedAside(dir);
  t.equal(spawnSync('mkfifo', [blockPath(dir, hex)]).status, 0);
  await t.rejects(readBlock(dir, hex), { code: 'BlockCorrupt', message: /not a regular file/ });
});

t.test('a symlink to a good copy in place of a block is corrupt, and a write replaces the link', async (t) => {
  const dir = store(t);
  const [hex, data, aside] = await movedAside(dir);
  symlinkSync(aside, blockPath(dir, hex));
  await t.rejects(readBlock(dir, hex), { code: 'BlockCorrupt', message: /not a regular file/ });
  t.equal(await writeBlock(dir, hex, data), 'repaired', 'a link is not the block');
  t.ok(lstatSync(blockPath(dir, hex)).isFile());
  t.ok((await readBlock(dir, hex)).equals(data));
});

t.test('a repair removes an empty directory in place of a block, and leaves one with something in it', async (t) => {
  const dir = store(t);
  const [hex, data] = await movedAside(dir);
  const path = blockPath(dir, hex);
  mkdirSync(path);
  t.equal(await writeBlock(dir, hex, data, { repair: true }), 'repaired');
  t.ok((await readBlock(dir, hex)).equals(data));

  rmSync(path);
  mkdirSync(path);
  writeFileSync(join(path, 'keep'), 'x');
  await t.rejects(writeBlock(dir, hex, data, { repair: true }), { code: 'BlockCorrupt', message: `${path} is a directory that is not empty; remove it by hand` });
  t.equal(readFileSync(join(path, 'keep'), 'utf8'), 'x');
  t.same(readdirSync(join(dir, 'tmp')), [], 'no temp file left');
});

t.test('a write replaces a wrong-sized file under the block\'s name, and records the damage', async (t) => {
  const dir = store(t);
  const data = randomFillSync(Buffer.alloc(65536));
  const hex = sha256(data).toString('hex');
  await writeBlock(dir, hex, data);
  const path = blockPath(dir, hex);
  writeFileSync(path, readFileSync(path).subarray(0, 4096));
  const found: string[] = [];
  t.teardown(watchStoreDamage(dir, (digest, code) => found.push(`${code} ${digest}`)));
  t.equal(await writeBlock(dir, hex, data), 'repaired');
  t.ok((await readBlock(dir, hex)).equals(data));
  t.same(found, [`BlockCorrupt ${hex}`]);
});

t.test('a write leaves a right-sized file alone without reading it', async (t) => {
  const { dir, hex, data, path, flipped } = await flippedBlock(t);
  t.equal(await writeBlock(dir, hex, data), 'present', 'damage that keeps the size is left to the damaged list');
  t.ok(readFileSync(path).equals(flipped));
});

t.test('findBlock tells a right-sized file, no file, an intact block of another length and a damaged file apart', async (t) => {
  const dir = store(t);
  const data = randomFillSync(Buffer.alloc(65536));
  const hex = sha256(data).toString('hex');
  t.same(await findBlock(dir, hex, data.length), { kind: 'absent' });
  await writeBlock(dir, hex, data);
  t.same(await findBlock(dir, hex, data.length), { kind: 'present' });
  t.same(await findBlock(dir, hex, 4096), { kind: 'otherLength', length: data.length }, 'the map is wrong, not the store');
  const path = blockPath(dir, hex);
  writeFileSync(path, readFileSync(path).subarray(0, 4096));
  const found: string[] = [];
  t.teardown(watchStoreDamage(dir, (digest, code) => found.push(`${code} ${digest}`)));
  t.match(await findBlock(dir, hex, data.length), { kind: 'damaged', path, size: 4096, error: { code: 'BlockCorrupt' } });
  t.same(found, [`BlockCorrupt ${hex}`], 'recorded for repair');
});
