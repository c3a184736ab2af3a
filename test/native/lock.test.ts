import t from 'tap';
import { readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

import { lockDataDir } from '../../src/native/index';

t.test('lockDataDir creates the directory and records the holder pid', async (t) => {
  const dataDir = join(t.testdir(), 'data', 'nested');
  const lock = lockDataDir(dataDir);
  t.teardown(() => lock.release());
  t.equal(lock.path, join(dataDir, 'lock'));
  t.equal(readFileSync(lock.path, 'utf8'), `${process.pid}\n`);
});

t.test('a second lock on the same data dir in the same process fails with DataDirLocked', async (t) => {
  const dataDir = t.testdir();
  const lock = lockDataDir(dataDir);
  t.throws(() => lockDataDir(dataDir), { code: 'DataDirLocked', message: new RegExp(`pid ${process.pid}`) });
  lock.release();
  lock.release();
  const again = lockDataDir(dataDir);
  again.release();
});

t.test('another process cannot take a held lock', async (t) => {
  const dataDir = t.testdir();
  const lock = lockDataDir(dataDir);
  t.teardown(() => lock.release());
  const addon = join(__dirname, '..', '..', 'build', 'Release', 'blocksnap_native.node');
  const child = spawnSync(process.execPath, ['-e', `
    try { require(${JSON.stringify(addon)}).lockFile(${JSON.stringify(join(dataDir, 'lock'))}); console.log('locked'); }
    catch (e) { console.log(e.code); }`], { encoding: 'utf8' });
  t.equal(child.stdout.trim(), 'DataDirLocked');
});

t.test('deleting the lock file does not let a second holder in', async (t) => {
  const dataDir = t.testdir();
  const lock = lockDataDir(dataDir);
  t.teardown(() => lock.release());
  unlinkSync(lock.path);
  t.throws(() => lockDataDir(dataDir), { code: 'DataDirLocked', message: new RegExp(`^${dataDir} is locked by another blocksnap process$`) });
  lock.release();
  lockDataDir(dataDir).release();
});
