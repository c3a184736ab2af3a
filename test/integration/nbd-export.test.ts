import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, statSync, symlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { RawClient } from '../nbd/fixtures/raw-client';
import { freshDaemon, runCli, startDaemon, tempDir, type Daemon } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble, sha256File } from './fixtures/images';

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

async function nbdDaemon(t: Test): Promise<Daemon & { nbd: string }> {
  const dir = tempDir(t);
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot);
  const nbd = join(dir, 'nbd.sock');
  const d = await startDaemon(t, { dataDir: join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock'), extraArgs: ['--nbd-socket', nbd] });
  return Object.assign(d, { nbd });
}

/** An 18 MiB + 4 KiB image: blocks 0, 2 and 4 (short) hold data, blocks 1 and 3 are ZERO. */
async function served(t: Test) {
  const d = await nbdDaemon(t);
  const img = join(d.imageRoot, 'vm.img');
  makeImage(img, 4 * BLOCK + 2 * MiB + 4096, [0, 2]);
  scribble(img, 4 * BLOCK + MiB, 64 * 1024);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  const snap = await d.json('snapshot', 'create', 'vm', '--name', 'one');
  const exp = await d.json('export', 'start', 'one', '--name', 'vm-one');
  await d.json('clone', 'one', join(d.imageRoot, 'one.raw'));
  return { d, img, snap, exp, clone: join(d.imageRoot, 'one.raw') };
}

t.test('a snapshot served over NBD reads exactly as its clone, and ZERO blocks are holes', async (t) => {
  const { d, exp, clone } = await served(t);
  t.equal(statSync(d.nbd).mode & 0o777, 0o600, 'the NBD socket is mode 0600, as the control socket without --socket-group');
  t.equal(exp.uri, `nbd+unix:///vm-one?socket=${d.nbd}`);
  t.equal(exp.writable, false);
  const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', exp.uri, clone]);
  t.equal(cmp.status, 0, cmp.out);
  const map = run('nbdinfo', ['--map', exp.uri]);
  t.equal(map.status, 0, map.out);
  const lines = map.out.trim().split('\n').map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
  t.same(lines, [[0, BLOCK, 0], [BLOCK, BLOCK, 3], [2 * BLOCK, BLOCK, 0], [3 * BLOCK, BLOCK, 3], [4 * BLOCK, 2 * MiB + 4096, 0]],
    'blocks 1 and 3 are hole+zero, the short last block is data');
  const copy = join(d.imageRoot, 'copy.raw');
  const nc = run('nbdcopy', [exp.uri, copy]);
  t.equal(nc.status, 0, nc.out);
  t.equal(sha256File(copy), sha256File(clone), 'nbdcopy of the export equals the clone');
});

t.test('several clients at once; an exported snapshot cannot be deleted; stopping drops its clients', async (t) => {
  const { d, exp, clone } = await served(t);
  const many = await Promise.all([1, 2, 3, 4].map(() => new Promise<number | null>((resolve) => {
    const { spawn } = require('node:child_process') as typeof import('node:child_process');
    spawn('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', exp.uri, clone], { stdio: 'ignore' }).on('exit', resolve);
  })));
  t.same(many, [0, 0, 0, 0], 'four concurrent qemu-img compare runs agree');

  const del = await d.cli('snapshot', 'delete', 'one', '--json');
  t.equal(del.code, 1);
  t.match(del.json(), { error: { code: 'SnapshotBusy', message: /exported as vm-one/ } });

  const c = await RawClient.open(d.nbd);
  await c.greet();
  const go = await c.go('vm-one');
  t.equal(go[go.length - 1]!.type, C.NBD_REP_ACK);
  t.match(await d.json('export', 'list'), [{ name: 'vm-one', connections: 1 }]);
  t.match(await d.json('export', 'stop', 'vm-one'), { name: 'vm-one', connections: 0 });
  t.ok(await c.closes(), 'the attached client was disconnected');
  t.same(await d.json('export', 'list'), []);
  t.match((await d.cli('export', 'start', 'one', '--name', 'a b', '--json')).json(), { error: { code: 'InvalidName' } });
  const byId = await d.json('export', 'start', 'one');
  t.equal(byId.name, (await d.json('snapshot', 'show', 'one')).id, 'the default name is the snapshot id');
  t.match((await d.cli('export', 'start', 'one', '--json')).json(), { error: { code: 'NameTaken' } });
  await d.json('export', 'stop', byId.name);
  t.match(await d.json('snapshot', 'delete', 'one'), { name: 'one' }, 'the snapshot can go once unexported');
  const again = await d.cli('export', 'stop', 'vm-one', '--json');
  t.match(again.json(), { error: { code: 'ExportNotFound' } });
});

t.test('a damaged block is an I/O error to the client, never wrong data', async (t) => {
  const { d, exp } = await served(t);
  const blocks = join(d.dataDir, 'blocks');
  const fan = readdirSync(blocks).filter((f) => /^[0-9a-f]{3}$/.test(f));
  const file = join(blocks, fan[0]!, readdirSync(join(blocks, fan[0]!))[0]!);
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from('rot'), 0, 3, 1000);
  closeSync(fd);
  const copy = run('nbdcopy', [exp.uri, join(d.imageRoot, 'bad.raw')]);
  t.not(copy.status, 0, 'the copy fails');
  await d.waitForLog(/DigestMismatch/);
});

t.test('exports need --nbd-socket', async (t) => {
  const d = await freshDaemon(t);
  makeImage(join(d.imageRoot, 'a.img'), BLOCK, [0]);
  await d.json('disk', 'add', 'a.img', '--name', 'a');
  await d.json('snapshot', 'create', 'a', '--name', 's');
  const r = await d.cli('export', 'start', 's', '--json');
  t.equal(r.code, 1);
  t.match(r.json(), { error: { code: 'NbdNotEnabled' } });
});

t.test('export list on a daemon without --nbd-socket says it serves no NBD socket, not how to start an export', async (t) => {
  const d = await freshDaemon(t);
  const r = await d.cli('export', 'list');
  t.equal(r.code, 0);
  t.match(r.stdout, /No exports: the daemon serves no NBD socket\. Restart it with --nbd-socket PATH/);
  t.notMatch(r.stdout, /export start/);
});

t.test('export list on a daemon serving NBD tells how to start an export', async (t) => {
  const d = await nbdDaemon(t);
  t.match((await d.cli('export', 'list')).stdout, /No exports\. Serve a snapshot with: blocksnap export start SNAPSHOT/);
});

t.test('--nbd-socket naming a directory or a symlink exits 2 saying what is there, with no word of another daemon', async (t) => {
  const dir = tempDir(t);
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot);
  mkdirSync(join(dir, 'a-dir'));
  symlinkSync(join(dir, 'elsewhere.sock'), join(dir, 'a-link'));
  for (const [name, what] of [['a-dir', /is a directory, not a socket/], ['a-link', /is a symbolic link to .*elsewhere\.sock, not a socket/]] as const) {
    const r = await runCli(['daemon', '--data-dir', join(dir, `data-${name}`), '--socket', join(dir, `${name}-d.sock`), '--image-root', imageRoot, '--nbd-socket', join(dir, name)]);
    t.equal(r.code, 2, name);
    t.match(r.stderr, what, name);
    t.match(r.stderr, /--nbd-socket .*\[SocketInUse\]/, name);
    t.notMatch(r.stderr, /another blocksnap daemon/, name);
  }
});

t.test('the NBD socket takes connections as soon as the control socket answers', async (t) => {
  // An operator's script exports right after the daemon is up; the NBD server must be there then.
  const d = await nbdDaemon(t);
  const c = await RawClient.open(d.nbd);
  t.equal((await c.greet()).readBigUInt64BE(0), C.NBDMAGIC, 'the NBD greeting');
  c.close();
});

t.test('a second daemon on a busy NBD socket exits 1 naming --nbd-socket, and the first keeps serving', async (t) => {
  const d = await nbdDaemon(t);
  const other = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', join(other, 'data'), '--socket', join(other, 'd.sock'), '--image-root', d.imageRoot, '--nbd-socket', d.nbd]);
  t.equal(r.code, 1);
  t.match(r.stderr, /blocksnap daemon: a daemon is already listening on .*nbd\.sock; .* Use --nbd-socket to choose another path \[SocketInUse\]/);
  t.notMatch(r.stderr, /Use --socket /);
  const c = await RawClient.open(d.nbd);
  t.equal((await c.greet()).readBigUInt64BE(0), C.NBDMAGIC, 'the first daemon\'s NBD socket still answers');
  c.close();
});
