import { mkdirSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { readBlockVerified } from '../../src/native/read-block';
import { sha256, writeBlock } from '../../src/store/block-io';
import { blockPath } from '../../src/store/format';

async function store(t: Test): Promise<{ dir: string; data: Buffer; digest: Buffer }> {
  const dir = join(t.testdir(), 'blocks');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const data = Buffer.alloc(256 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
  const digest = sha256(data);
  await writeBlock(dir, digest.toString('hex'), data);
  return { dir, data, digest };
}

t.test('a stored block reads back verified, off the JS thread', async (t) => {
  const s = await store(t);
  t.ok((await readBlockVerified(s.dir, s.digest)).equals(s.data));
  t.ok((await readBlockVerified(s.dir, s.digest, s.data.length)).equals(s.data), 'with its expected length');
});

t.test('a damaged, missing or mis-sized block is an error naming the digest, never data', async (t) => {
  const s = await store(t);
  await t.rejects(readBlockVerified(s.dir, s.digest, 4096), { code: 'BlockCorrupt' });
  await t.rejects(readBlockVerified(s.dir, Buffer.alloc(32, 1)), { code: 'BlockMissing' });
  const fd = openSync(blockPath(s.dir, s.digest.toString('hex')), 'r+');
  writeSync(fd, Buffer.from('x'), 0, 1, 64 + 100);
  closeSync(fd);
  await t.rejects(readBlockVerified(s.dir, s.digest), { code: 'DigestMismatch', details: { digest: s.digest.toString('hex') } });
  await t.rejects(readBlockVerified(s.dir, Buffer.alloc(5)), { code: 'InvalidArgument' });
});
