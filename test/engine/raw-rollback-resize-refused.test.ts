/**
 * A raw rollback whose first change, resizing the image, is refused (a FUSE file without
 * truncate: ENOSYS; here a file past the process's file size limit: EFBIG) wrote nothing: it
 * leaves the disk as it was, journal cleared, and says so. It said the image was partly rolled
 * back and left the disk refusing snapshots, every rerun failing the same way. The engine runs
 * in a child process started under prlimit, so that the limit binds it alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import { snapshot } from '../helpers/engine';
import { MiB, makeImage, pattern, sha256File, writeAt } from '../helpers/images';
import type { RollbackChildReport } from './rollback-child';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');
const GiB = 1024 * MiB;

t.test('a rollback that cannot resize the image leaves the disk as it was and says nothing was written', {
  skip: spawnSync('prlimit', ['--version']).error ? 'prlimit is not installed (apt-get install util-linux)' : false,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images);
  // Snapshotted at 1 GiB, then cut to 8 MiB: the rollback has nothing to write, only to grow it.
  const img = makeImage(join(images, 'vm.raw'), GiB);
  writeAt(img, 0, pattern('data', MiB));
  const engine = await Engine.open({ dataDir, imageRoots: [images], blockSize: 64 * 1024 });
  const disk = await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, disk.id, 'big');
  await engine.close();
  truncateSync(img, 8 * MiB);
  const before = await sha256File(img);

  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'rollback-child.ts'))})`;
  const child = spawnSync('prlimit', [`--fsize=${512 * MiB}`, '--', 'env', '-u', 'NODE_OPTIONS',
    process.execPath, '-e', main, dataDir, images, disk.id, snap.id], { cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 300_000 });
  t.equal(child.status, 0, `the child engine ran: ${child.stderr}`);
  const report = JSON.parse(child.stdout.trim().split('\n').pop()!) as RollbackChildReport;

  t.match(report.job, {
    state: 'failed',
    error: { code: 'IOError', message: /^ftruncate .*vm\.raw: File too large \(EFBIG\)\. The rollback of disk vm to big could not resize its image to the snapshot's 1 GiB and wrote nothing: the disk is as it was and takes snapshots as before\.$/ },
  });
  t.equal(report.pendingRollback, null, 'the journal is cleared');
  t.equal(report.snapshot.state, 'succeeded', 'and the disk takes snapshots');
  t.equal(await sha256File(img), before, 'the image is as it was');
});
