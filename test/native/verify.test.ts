import t from 'tap';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { scanImage, verifyBlocks } from '../../src/native/index';
import { BLOCK_HEADER_SIZE, blockPath } from '../../src/store/format';
import { BS, digestAt, makeImage, makeStore, noise } from './fixtures/images';

async function storeWithBlocks(dir: string, count: number) {
  const img = join(dir, 'img');
  makeImage(img, count * BS, [[0, noise(count * BS)]]);
  const store = makeStore(dir);
  const scan = await scanImage({ imagePath: img, storeDir: store, blockSize: BS });
  const hex = (i: number) => digestAt(scan.digests, i).toString('hex');
  return { store, digests: scan.digests, hex };
}

t.test('verify of an intact store finds no problems', async (t) => {
  const dir = t.testdir();
  const { store, digests } = await storeWithBlocks(dir, 6);
  const r = await verifyBlocks({ storeDir: store, digests });
  t.same(r, { checked: 6, problems: [] });
});

t.test('verify reports a missing block', async (t) => {
  const dir = t.testdir();
  const { store, digests, hex } = await storeWithBlocks(dir, 3);
  unlinkSync(blockPath(store, hex(1)));
  const r = await verifyBlocks({ storeDir: store, digests });
  t.equal(r.checked, 3);
  t.match(r.problems, [{ digest: hex(1), reason: 'missing', message: /missing/ }]);
  t.equal(r.problems.length, 1);
});

t.test('verify reports a block file with a bad header', async (t) => {
  const dir = t.testdir();
  const { store, digests, hex } = await storeWithBlocks(dir, 3);
  const file = blockPath(store, hex(2));
  const bytes = readFileSync(file);
  bytes.writeUInt16LE(7, 8); // version 7
  writeFileSync(file, bytes);
  const r = await verifyBlocks({ storeDir: store, digests });
  t.match(r.problems, [{ digest: hex(2), reason: 'corrupt-header', message: /version 7/ }]);
});

t.test('verify reports a truncated block file as a corrupt header', async (t) => {
  const dir = t.testdir();
  const { store, digests, hex } = await storeWithBlocks(dir, 2);
  const file = blockPath(store, hex(0));
  writeFileSync(file, readFileSync(file).subarray(0, BLOCK_HEADER_SIZE + 10));
  const r = await verifyBlocks({ storeDir: store, digests });
  t.match(r.problems, [{ digest: hex(0), reason: 'corrupt-header' }]);
});

t.test('verify reports a payload that no longer matches its digest', async (t) => {
  const dir = t.testdir();
  const { store, digests, hex } = await storeWithBlocks(dir, 3);
  const file = blockPath(store, hex(0));
  const bytes = readFileSync(file);
  bytes[BLOCK_HEADER_SIZE + 77] ^= 1;
  writeFileSync(file, bytes);
  const r = await verifyBlocks({ storeDir: store, digests });
  t.match(r.problems, [{ digest: hex(0), reason: 'digest-mismatch' }]);
});

t.test('verify lists several problems in digest order', async (t) => {
  const dir = t.testdir();
  const { store, digests, hex } = await storeWithBlocks(dir, 8);
  unlinkSync(blockPath(store, hex(6)));
  unlinkSync(blockPath(store, hex(1)));
  const r = await verifyBlocks({ storeDir: store, digests, threads: 3 });
  t.same(r.problems.map((p) => p.digest), [hex(1), hex(6)]);
});

t.test('verify progress counts blocks and ends with done equal to total', async (t) => {
  const dir = t.testdir();
  const { store, digests } = await storeWithBlocks(dir, 4);
  const calls: Array<[number, number]> = [];
  await verifyBlocks({ storeDir: store, digests, onProgress: (d, n) => calls.push([d, n]) });
  t.same(calls[calls.length - 1], [4, 4]);
});
