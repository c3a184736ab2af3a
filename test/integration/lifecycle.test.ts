import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BIN, freshDaemon, runCli, startDaemon, tempDir } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble, sha256File } from './fixtures/images';

t.test('a restart keeps every snapshot, and they still restore', async (t) => {
  const d = await freshDaemon(t);
  const img = join(d.imageRoot, 'vm.img');
  makeImage(img, 16 * MiB, [0, 3]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  const one = await d.json('snapshot', 'create', 'vm', '--name', 'one');
  const oneHash = sha256File(img);
  scribble(img, BLOCK, 4096);
  const two = await d.json('snapshot', 'create', 'vm', '--name', 'two');
  const before = await d.json('snapshot', 'list');
  t.equal(await d.stop(), 0);

  const again = await startDaemon(t, { dataDir: d.dataDir, imageRoot: d.imageRoot, socketPath: d.socketPath });
  t.same(await again.json('snapshot', 'list'), before, 'the same snapshots, field for field');
  t.same((await again.json('snapshot', 'list')).map((s: { id: string }) => s.id), [one.id, two.id]);
  await again.json('rollback', 'vm', 'one');
  t.equal(sha256File(img), oneHash);
  t.match(await again.json('store', 'verify'), { problems: [] });
});

t.test('SIGTERM during a snapshot leaves no creating snapshot after a restart', async (t) => {
  const d = await freshDaemon(t);
  const img = join(d.imageRoot, 'big.img');
  // 1 GiB virtual, 96 MiB of distinct data spread out: enough work to be caught mid-way.
  const blocks = Array.from({ length: 24 }, (_, i) => i * 10);
  makeImage(img, 1024 * MiB, blocks);
  await d.json('disk', 'add', 'big.img', '--name', 'big');
  const job = await d.json('snapshot', 'create', 'big', '--name', 'cut', '--no-wait');
  t.equal(job.state, 'running');
  t.equal(await d.stop('SIGTERM'), 0, 'the daemon stops cleanly mid-job');
  t.match(d.stderr(), /shutting down/);
  t.comment(`log of the stop: ${d.stderr().split('\n').filter((l) => /shutting down|cancel|stopped/i.test(l)).join(' | ')}`);

  const again = await startDaemon(t, { dataDir: d.dataDir, imageRoot: d.imageRoot, socketPath: d.socketPath });
  const snaps = await again.json('snapshot', 'list');
  t.notOk(snaps.some((s: { status: string }) => s.status === 'creating'), `no creating snapshot: ${JSON.stringify(snaps.map((s: { status: string }) => s.status))}`);
  const ended = await again.json('job', 'show', job.id);
  t.not(ended.state, 'running', `the job ended (${ended.state})`);
  t.comment(`the interrupted job ended ${ended.state}; snapshots: ${JSON.stringify(snaps.map((s: { name: string; status: string }) => `${s.name}:${s.status}`))}`);
  // The store is consistent: a new snapshot works, and verify finds nothing wrong.
  t.match(await again.json('snapshot', 'create', 'big', '--name', 'after'), { status: 'available', logicalBytes: blocks.length * BLOCK });
  await again.json('store', 'gc');
  t.match(await again.json('store', 'verify'), { problems: [] });
});

t.test('a second daemon on the same data dir exits 1 with a clear message', async (t) => {
  const d = await freshDaemon(t);
  const other = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', d.dataDir, '--socket', join(other, 'second.sock'), '--image-root', d.imageRoot]);
  t.equal(r.code, 1);
  t.match(r.stderr, /blocksnap daemon: another blocksnap daemon is already using the data directory .* \[DataDirLocked\]/);
  t.match(await d.json('disk', 'list'), [], 'the first daemon is unharmed');
});

t.test('a second daemon on the same socket exits 1 and leaves the socket alone', async (t) => {
  const d = await freshDaemon(t);
  const other = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', join(other, 'data'), '--socket', d.socketPath, '--image-root', d.imageRoot]);
  t.equal(r.code, 1);
  t.match(r.stderr, /blocksnap daemon: a daemon is already listening on .* \[SocketInUse\]/);
  t.ok(existsSync(d.socketPath));
  t.match(await d.json('disk', 'list'), []);
});

t.test('without --image-root the working directory is the only root, and the log says so', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'img'));
  const d = await startDaemon(t, { dataDir: join(dir, 'data'), imageRoot: join(dir, 'img'), socketPath: join(dir, 's.sock'), defaultRoot: true });
  t.match(await d.json('version'), { daemon: { imageRoots: [join(dir, 'img')] } });
  await d.waitForLog(/no --image-root given: the working directory is the only image root/);
  t.equal(await d.stop(), 0);
});

t.test('a socket mode that lets every local user connect is warned about at start', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'img'));
  const d = await startDaemon(t, { dataDir: join(dir, 'data'), imageRoot: join(dir, 'img'), socketPath: join(dir, 's.sock'), extraArgs: ['--socket-mode', '0666'] });
  await d.waitForLog(/"level":"warn",.*"msg":"--socket-mode 0666 lets every local user connect to the daemon: any of them may use it/);
  t.equal(await d.stop(), 0);
});

t.test('a stale socket file left by a killed daemon is replaced at start', async (t) => {
  const d = await freshDaemon(t);
  d.proc.kill('SIGKILL');
  await d.exited;
  t.ok(existsSync(d.socketPath), 'SIGKILL left the socket file behind');
  const again = await startDaemon(t, { dataDir: d.dataDir, imageRoot: d.imageRoot, socketPath: d.socketPath });
  await again.waitForLog(/removed a stale socket file/);
  t.match(await again.json('disk', 'list'), []);
});

t.test('SIGHUP stops the daemon cleanly: the running job ends cancelled, exit 0, no socket left', async (t) => {
  const dir = tempDir(t);
  const nbdSocket = join(dir, 'nbd.sock');
  const d = await freshDaemon(t, ['--nbd-socket', nbdSocket]);
  makeImage(join(d.imageRoot, 'vm.img'), 16 * MiB, [0]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  // An import whose stream never comes runs until something stops it.
  const imp = spawn(process.execPath, [BIN, 'snapshot', 'import', '-i', '-', '--disk', 'vm', '--socket', d.socketPath], { stdio: ['pipe', 'ignore', 'ignore'] });
  t.teardown(() => imp.kill('SIGKILL'));
  let job: { id: string; state: string } | undefined;
  while (job === undefined) job = (await d.json<Array<{ id: string; kind: string; state: string }>>('job', 'list')).find((j) => j.kind === 'import');
  t.equal(job.state, 'running');

  t.equal(await d.stop('SIGHUP'), 0);
  t.match(d.stderr(), /"signal":"SIGHUP".*"msg":"shutting down"/);
  t.notOk(existsSync(d.socketPath), 'the control socket is removed');
  t.notOk(existsSync(nbdSocket), 'the NBD socket is removed');
  const again = await startDaemon(t, { dataDir: d.dataDir, imageRoot: d.imageRoot, socketPath: d.socketPath });
  t.match(await again.json('job', 'show', job.id), { state: 'cancelled', error: { code: 'Cancelled', message: /^the daemon was shutting down/ } });
});

t.test('a --socket path that is a regular file is refused for good: exit 2, and no data dir is made', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'img'));
  writeFileSync(join(dir, 'f'), '');
  const r = await runCli(['daemon', '--data-dir', join(dir, 'data'), '--socket', join(dir, 'f'), '--image-root', join(dir, 'img')]);
  t.equal(r.code, 2);
  t.match(r.stderr, /blocksnap daemon: .*f is a regular file, not a socket.*--socket.* \[SocketInUse\]/);
  t.notOk(existsSync(join(dir, 'data')));
});

t.test('an --nbd-socket a live daemon holds is refused before the data dir is made: exit 1', async (t) => {
  const dir = tempDir(t);
  const nbdSocket = join(dir, 'nbd.sock');
  const d = await freshDaemon(t, ['--nbd-socket', nbdSocket]);
  const r = await runCli(['daemon', '--data-dir', join(dir, 'new', 'data'), '--socket', join(dir, 'new.sock'), '--nbd-socket', nbdSocket, '--image-root', d.imageRoot]);
  t.equal(r.code, 1, 'the other daemon may stop: a restart may succeed');
  t.match(r.stderr, /a daemon is already listening on .*nbd\.sock.*--nbd-socket.* \[SocketInUse\]/);
  t.notOk(existsSync(join(dir, 'new')), 'no data dir, so none keeps a block size it was never meant to have');
  t.notOk(existsSync(join(dir, 'new.sock')));
  t.match(await d.json('disk', 'list'), [], 'the first daemon is unharmed');
});
