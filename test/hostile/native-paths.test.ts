/**
 * The native side of the path checks: given the real path the engine checked, the addon refuses
 * to read or write through a directory that has since become a symlink (the race the engine's
 * own check cannot close), and a file it created in the wrong place is removed again.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { applyImage, scanImage } from '../../src/native/index';

const BLOCK = 65536;

t.test('a directory swapped for a symlink after the check is refused by scan and apply', async (t) => {
  const dir = t.testdir();
  const inside = join(dir, 'root', 'vms');
  const outside = join(dir, 'outside');
  mkdirSync(inside, { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(inside, 'disk.img'), Buffer.alloc(BLOCK, 1));
  writeFileSync(join(outside, 'disk.img'), Buffer.alloc(BLOCK, 2)); // the file an attacker wants read or overwritten
  const checked = join(inside, 'disk.img'); // what the engine resolved and checked
  // The swap: the checked directory now points outside.
  renameSync(inside, join(dir, 'root', 'vms.real'));
  symlinkSync(outside, inside);

  const storeDir = join(dir, 'blocks');
  const scan = await scanImage({ imagePath: checked, storeDir, blockSize: BLOCK }).catch((e: { code: string; message: string }) => e);
  t.match(scan, { code: 'NotAnImage', message: /symlink was swapped/ }, 'the scan refuses to read through it');
  const stored = existsSync(storeDir) ? readdirSync(storeDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()) : [];
  t.same(stored, [], 'nothing was read into the store');

  const update = await applyImage({ imagePath: checked, storeDir, blockSize: BLOCK, sizeBytes: BLOCK, digests: Buffer.alloc(32), mode: 'update' })
    .catch((e: { code: string }) => e);
  t.match(update, { code: 'NotAnImage' }, 'a rollback refuses to write through it');
  t.same(readFileSync(join(outside, 'disk.img')), Buffer.alloc(BLOCK, 2), 'the outside file is untouched');

  const created = join(inside, 'clone.img');
  const create = await applyImage({ imagePath: created, storeDir, blockSize: BLOCK, sizeBytes: BLOCK, digests: Buffer.alloc(32), mode: 'create' })
    .catch((e: { code: string }) => e);
  t.match(create, { code: 'NotAnImage' }, 'a clone refuses to create through it');
  t.notOk(existsSync(join(outside, 'clone.img')), 'and leaves no file outside');
});
