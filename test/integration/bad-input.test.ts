import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { frame } from '../../src/daemon/protocol/frame';
import { encodeMessage, PROTOCOL_VERSION } from '../../src/daemon/protocol/messages';
import { RawClient } from '../daemon/fixtures/raw-client';
import { freshDaemon, runCli, tempDir } from './fixtures/harness';
import { MiB, makeImage } from './fixtures/images';

t.test('bad input is answered with the right code while the daemon keeps serving', async (t) => {
  const d = await freshDaemon(t);
  const outside = tempDir(t, 'bsi-out-');
  makeImage(join(outside, 'secret.img'), 4 * MiB, [0]);
  makeImage(join(d.imageRoot, 'ok.img'), 8 * MiB, [0]);
  mkdirSync(join(d.imageRoot, 'a-directory'));
  symlinkSync(join(outside, 'secret.img'), join(d.imageRoot, 'escape.img'));
  writeFileSync(join(d.imageRoot, 'not-used'), '');
  symlinkSync('loop', join(d.imageRoot, 'loop'));
  await d.json('disk', 'add', 'ok.img', '--name', 'ok');
  await d.json('snapshot', 'create', 'ok', '--name', 'base');

  const cases: Array<{ args: string[]; code: string; status: number }> = [
    { args: ['disk', 'add', 'missing.img'], code: 'ImageNotFound', status: 1 },
    { args: ['disk', 'add', 'a-directory'], code: 'NotAnImage', status: 1 },
    { args: ['disk', 'add', join(outside, 'secret.img')], code: 'PathNotAllowed', status: 1 },
    { args: ['disk', 'add', 'escape.img'], code: 'PathNotAllowed', status: 1 },
    { args: ['disk', 'add', 'ok.img'], code: 'DiskAlreadyRegistered', status: 1 },
    { args: ['disk', 'add', 'ok.img', '--name', 'has space'], code: 'InvalidName', status: 2 },
    { args: ['disk', 'show', 'nope'], code: 'DiskNotFound', status: 1 },
    { args: ['disk', 'show', 'd-0000000000000000'], code: 'DiskNotFound', status: 1 },
    { args: ['snapshot', 'show', 's-0000000000000000'], code: 'SnapshotNotFound', status: 1 },
    { args: ['snapshot', 'create', 'nope'], code: 'DiskNotFound', status: 1 },
    { args: ['snapshot', 'create', 'ok', '--name', 'auto-daily'], code: 'InvalidName', status: 2 },
    { args: ['snapshot', 'create', 'ok', '--name', 'bad/name'], code: 'InvalidName', status: 2 },
    { args: ['snapshot', 'create', 'ok', '--name', 'x'.repeat(129)], code: 'InvalidName', status: 2 },
    { args: ['snapshot', 'create', 'ok', '--name', 'base'], code: 'NameTaken', status: 1 },
    { args: ['snapshot', 'delete', 'nope'], code: 'SnapshotNotFound', status: 1 },
    { args: ['rollback', 'ok', 'nope'], code: 'SnapshotNotFound', status: 1 },
    { args: ['clone', 'base', join(outside, 'copy.img')], code: 'PathNotAllowed', status: 1 },
    { args: ['clone', 'base', 'no-such-dir/copy.img'], code: 'ImageNotFound', status: 1 },
    { args: ['clone', 'base', 'ok.img/copy.img'], code: 'ImageNotFound', status: 1 },
    { args: ['clone', 'base', 'loop/copy.img'], code: 'PathNotAllowed', status: 1 },
    { args: ['clone', 'base', `${'n'.repeat(300)}.img`], code: 'InvalidArgument', status: 2 },
    { args: ['disk', 'add', `${'n'.repeat(300)}.img`], code: 'InvalidArgument', status: 2 },
    { args: ['job', 'show', 'j-0000000000000000'], code: 'JobNotFound', status: 1 },
    { args: ['clone', 'base', 'x.img', '--format', 'vmdk'], code: 'InvalidArgument', status: 2 },
    { args: ['disk', 'frobnicate'], code: 'InvalidArgument', status: 2 },
  ];
  for (const c of cases) {
    const r = await d.cli(...c.args, '--json');
    t.equal(r.code, c.status, `exit status of ${c.args.join(' ')}`);
    t.match(r.json(), { error: { code: c.code, message: /./ } }, `${c.code} for ${c.args.join(' ')}`);
  }

  const human = await d.cli('disk', 'show', 'nope');
  t.equal(human.code, 1);
  t.equal(human.stdout, '');
  t.match(human.stderr, /^blocksnap: no disk "nope" \[DiskNotFound\]/);

  t.match(await d.json('disk', 'list'), [{ name: 'ok' }], 'the daemon still serves');
});

t.test('an oversized frame and garbage bytes close only their own connection', async (t) => {
  const d = await freshDaemon(t);
  const bystander = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => bystander.close());

  const big = await RawClient.ready(d.socketPath);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(64 * MiB);
  big.sendBytes(Buffer.concat([header, Buffer.alloc(1024)]));
  t.match(await big.response(null), { error: { code: 'FrameTooLarge' } });
  await big.waitClosed();

  const garbage = await RawClient.ready(d.socketPath);
  garbage.sendBytes(frame(Buffer.from([0xc1, 0xff, 0x00, 0x13])));
  t.match(await garbage.response(null), { error: { code: 'ProtocolError' } });
  await garbage.waitClosed();

  const noHello = await RawClient.connect(d.socketPath);
  noHello.sendBytes(Buffer.from('\x00\x00\x00\x02hi'));
  t.match(await noHello.response(null), { error: { code: 'ProtocolError' } });
  await noHello.waitClosed();

  t.same(await bystander.call('disk.list'), [], 'a client connected before is unaffected');
  t.same(await d.json('disk', 'list'), [], 'a new client is served');
});

t.test('a client with nothing listening gets DaemonUnavailable', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['disk', 'list', '--json', '--socket', join(dir, 'none.sock')]);
  t.equal(r.code, 1);
  t.match(r.json(), { error: { code: 'DaemonUnavailable' } });
});

t.test('a request pipelined behind hello is told it came before hello was answered', async (t) => {
  const d = await freshDaemon(t);
  const c = await RawClient.connect(d.socketPath);
  t.teardown(() => c.close());
  // One write, so the daemon reads both frames before hello has been answered.
  c.sendBytes(Buffer.concat([
    frame(encodeMessage({ id: 1, method: 'hello', params: { protocol: PROTOCOL_VERSION } })),
    frame(encodeMessage({ id: 2, method: 'disk.list', params: {} })),
  ]));
  t.match(await c.response(1), { result: { protocol: PROTOCOL_VERSION } });
  const early = await c.response(2);
  t.match(early, { error: { code: 'ProtocolError', message: /disk\.list was sent before hello was answered/ } });
  t.notMatch(early, { error: { message: /first request must be hello/ } });
});

t.test('group.create over the group limit is refused naming that limit', async (t) => {
  const d = await freshDaemon(t);
  const client = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => client.close());
  const disks = Array.from({ length: 65 }, (_, i) => `d${i}`);
  await t.rejects(client.call('group.create', { disks }), { code: 'InvalidArgument', message: /params\.disks must be a non-empty array of at most 64 / });
});

t.test('a daemon given a data dir or image root that is not a directory exits 2 saying so', async (t) => {
  const dir = tempDir(t);
  const afile = join(dir, 'afile');
  writeFileSync(afile, '');
  mkdirSync(join(dir, 'images'));
  const start = (dataDir: string, root: string): ReturnType<typeof runCli> =>
    runCli(['daemon', '--data-dir', dataDir, '--socket', join(dir, 'd.sock'), '--image-root', root]);
  const badRoot = await start(join(dir, 'data'), afile);
  t.equal(badRoot.code, 2, 'an image root that is a file');
  t.match(badRoot.stderr, /image root .*afile is not a directory \[InvalidArgument\]/);
  const missingRoot = await start(join(dir, 'data'), join(dir, 'nonexistent'));
  t.equal(missingRoot.code, 2, 'an image root that does not exist');
  t.match(missingRoot.stderr, /image root .*nonexistent does not exist \[InvalidArgument\]/);
  const badData = await start(afile, join(dir, 'images'));
  t.equal(badData.code, 2, 'a data dir that is a file');
  t.match(badData.stderr, /data directory .*afile is not a directory \[InvalidArgument\]/);
});

t.test('a daemon given a bad socket mode or group exits 2 with the code, as every other error', async (t) => {
  const dir = tempDir(t);
  const start = (...extra: string[]): ReturnType<typeof runCli> =>
    runCli(['daemon', '--data-dir', join(dir, 'data'), '--socket', join(dir, 'd.sock'), '--image-root', dir, ...extra]);
  const mode = await start('--socket-mode', '999');
  t.equal(mode.code, 2);
  t.match(mode.stderr, /\nblocksnap daemon: --socket-mode must be an octal mode string .* \[InvalidArgument\]\n$/);
  const group = await start('--socket-group', 'no-such-group-here');
  t.equal(group.code, 2);
  t.match(group.stderr, /\nblocksnap daemon: socket group "no-such-group-here" does not exist \[InvalidArgument\]\n$/);
});

t.test('a daemon asked for socket bits beyond the permissions exits 2 saying those bits are refused', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', join(dir, 'data'), '--socket', join(dir, 'd.sock'), '--image-root', dir, '--socket-mode', '4770']);
  t.equal(r.code, 2);
  t.match(r.stderr, /\nblocksnap daemon: --socket-mode 4770 is refused: setuid, setgid and sticky bits mean nothing on a socket; .* \[InvalidArgument\]\n$/);
  t.notOk(existsSync(join(dir, 'data')), 'before the data dir is made');
});

t.test('a daemon started in / without --image-root exits 2 naming --image-root, and makes nothing', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', join(dir, 'data'), '--socket', join(dir, 'd.sock')], {}, '/');
  t.equal(r.code, 2);
  t.match(r.stderr, /\nblocksnap daemon: no --image-root given and the working directory is \/, .*--image-root .* \[InvalidArgument\]\n$/);
  t.notOk(existsSync(join(dir, 'data')));
});

t.test('a daemon given --image-root / exits 2, and makes nothing', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', join(dir, 'data'), '--socket', join(dir, 'd.sock'), '--image-root', '/']);
  t.equal(r.code, 2);
  t.match(r.stderr, /\nblocksnap daemon: image root \/ is refused: every socket user could then read and overwrite any file on the host .* \[InvalidArgument\]\n$/);
  t.notOk(existsSync(join(dir, 'data')));
});

t.test('a daemon refused for its settings logs the refusal as a JSON line too, before the plain one', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['daemon', '--data-dir', join(dir, 'data'), '--socket', join(dir, 'd.sock'), '--image-root', dir, '--socket-group', 'no-such-group-here']);
  t.equal(r.code, 2);
  const [json, plain] = r.stderr.trimEnd().split('\n');
  t.match(JSON.parse(json!), { level: 'fatal', code: 'InvalidArgument', msg: 'socket group "no-such-group-here" does not exist' });
  t.equal(plain, 'blocksnap daemon: socket group "no-such-group-here" does not exist [InvalidArgument]');
});

/** A daemon with two disks, vm1 and ch. */
async function twoDisks(t: Test): Promise<Awaited<ReturnType<typeof freshDaemon>>> {
  const d = await freshDaemon(t);
  makeImage(join(d.imageRoot, 'vm1.img'), 4 * MiB, [0]);
  makeImage(join(d.imageRoot, 'ch.img'), 4 * MiB, [0]);
  await d.json('disk', 'add', 'vm1.img', '--name', 'vm1');
  await d.json('disk', 'add', 'ch.img', '--name', 'ch');
  return d;
}

t.test('rollback to another disk\'s snapshot says whose it is, by name as by id', async (t) => {
  const d = await twoDisks(t);
  const ch3 = await d.json('snapshot', 'create', 'ch', '--name', 'ch3');
  t.match(await d.json('snapshot', 'show', 'ch3'), { id: ch3.id }, 'the name alone finds it');
  for (const ref of ['ch3', ch3.id as string]) {
    const r = await d.cli('rollback', 'vm1', ref, '--json');
    t.equal(r.code, 1, `rollback vm1 ${ref} fails`);
    t.match(r.json(), { error: { code: 'SnapshotNotFound', message: `snapshot ${ch3.id} belongs to another disk, not to vm1; clone it instead` } }, ref);
  }
  const human = await d.cli('rollback', 'vm1', 'ch3');
  t.match(human.stderr, /belongs to another disk, not to vm1; clone it instead \[SnapshotNotFound\]/);
  const typo = await d.cli('rollback', 'vm1', 'ch4', '--json');
  t.match(typo.json(), { error: { code: 'SnapshotNotFound', message: 'no snapshot "ch4"' } }, 'a name no disk has is still not found');
});

t.test('an export\'s base given by name is looked for on the exported snapshot\'s disk only', async (t) => {
  const d = await twoDisks(t);
  await d.json('snapshot', 'create', 'ch', '--name', 'ch3');
  await d.json('snapshot', 'create', 'vm1', '--name', 'v1');
  const r = await d.cli('snapshot', 'export', 'v1', '--from', 'ch3', '-o', join(d.imageRoot, 'v1.bsnap'), '--json');
  t.equal(r.code, 1);
  t.match(r.json(), { error: { code: 'SnapshotNotFound', message: /^base s-[0-9a-f]+ \(ch3\) is a snapshot of disk ch, not of vm1: the base of an incremental export must be a snapshot of the same disk$/ } },
    'another disk\'s snapshot of that name is not taken for the base, and the refusal says whose it is');
  t.notOk(existsSync(join(d.imageRoot, 'v1.bsnap')), 'nothing was written');
});
