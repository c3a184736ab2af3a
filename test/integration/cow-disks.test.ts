/**
 * Copy-on-write disks end to end: a real daemon serving a COW disk over NBD to real clients
 * (qemu-io, qemu-img, nbdinfo), snapshots taken while it is served, rollback, flatten, and a
 * daemon killed after a flush.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { RawClient } from '../nbd/fixtures/raw-client';
import { startDaemon, tempDir, type Daemon, type DaemonOptions } from './fixtures/harness';
import { BLOCK, MiB, makeImage } from './fixtures/images';

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** qemu-io commands against an image (a file or an NBD URI); fails the test with its output. */
function io(t: Test, image: string, ...commands: string[]): string {
  const r = run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), image]);
  t.equal(r.status, 0, `qemu-io ${commands.join('; ')}: ${r.out}`);
  t.notMatch(r.out, /Pattern verification failed|error|failed/i, `qemu-io ${commands.join('; ')}`);
  return r.out;
}

function same(t: Test, a: string, b: string, what: string): void {
  const r = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', a, b]);
  t.equal(r.status, 0, `${what}: ${r.out}`);
}

interface Layout extends DaemonOptions { nbd: string }

function layout(t: Test): Layout {
  const dir = tempDir(t, 'bsc-');
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot);
  const nbd = join(dir, 'nbd.sock');
  return { dataDir: join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock'), nbd, extraArgs: ['--nbd-socket', nbd] };
}

/**
 * A 16 MiB disk with data in blocks 0 and 2 (1 and 3 ZERO), snapshot "base", a COW clone "c"
 * of it served writable, and `expected`: a plain copy of the base that the tests write the same
 * way, as the reference content.
 */
async function cow(t: Test, l: Layout = layout(t)) {
  const d = await startDaemon(t, l);
  const img = join(l.imageRoot, 'vm.img');
  makeImage(img, 4 * BLOCK, [0, 2]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  await d.json('snapshot', 'create', 'vm', '--name', 'base');
  const expected = join(l.imageRoot, 'expected.raw');
  copyFileSync(img, expected);
  const disk = await d.json('clone', 'base', '--cow', '--name', 'c');
  const exp = await d.json('export', 'start', 'c', '--writable');
  return { d, l, img, expected, disk, exp, uri: exp.uri as string };
}

async function fullClone(d: Daemon, snap: string, name: string): Promise<string> {
  const path = join(d.imageRoot, name);
  await d.json('clone', snap, path);
  return path;
}

t.test('clone --cow is a disk at once, and its writable export reads exactly as the snapshot', async (t) => {
  const { d, disk, exp, uri, img } = await cow(t);
  t.match(disk, { name: 'c', format: 'cow', cow: { layers: [String] } });
  t.match(exp, { name: 'c', writable: true, snapshotId: null, diskId: disk.id });
  const show = await d.json('disk', 'show', 'c');
  t.match(show, { format: 'cow', cow: { originSnapshotId: disk.cow.originSnapshotId, overlayBytes: 0 } });
  same(t, uri, await fullClone(d, 'base', 'base.raw'), 'the COW export equals a full clone of its base');
  same(t, uri, img, 'and the original image');
  const info = run('nbdinfo', ['--json', uri]);
  t.equal(info.status, 0, info.out);
  t.match(JSON.parse(info.out), { exports: [{ 'is_read_only': false, 'can_flush': true, 'can_fua': true, 'can_trim': true, 'can_zero': true, 'can_multi_conn': true }] },
    'the export advertises FLUSH, FUA, TRIM, WRITE_ZEROES and multi-conn');
});

t.test('qemu-io writes through the export; snapshots in the middle hold exactly what was written before them', async (t) => {
  const { d, uri, expected } = await cow(t);
  const steps = [
    ['write -P 0x11 0 4k', 'write -P 0x22 5M 100k', 'write -z 9M 64k'],
    ['write -P 0x33 4k 1M', 'write -P 0x44 15M 1M', 'discard 8M 1M'],
  ];
  const snaps: Array<{ id: string; expected: string }> = [];
  for (const [i, cmds] of steps.entries()) {
    io(t, uri, ...cmds);
    io(t, expected, ...cmds.map((c) => c.replace(/^discard (\S+) (\S+)$/, 'write -z $1 $2')));
    await d.json('snapshot', 'create', 'c', '--name', `s${i}`);
    const snap = await d.json('snapshot', 'show', `s${i}`);
    t.match(snap, { consistency: 'point-in-time', status: 'available' }, `snapshot ${i}`);
    const frozen = join(d.imageRoot, `expected-${i}.raw`);
    copyFileSync(expected, frozen);
    snaps.push({ id: snap.id, expected: frozen });
  }
  io(t, uri, 'write -P 0x55 0 2M');
  for (const [i, s] of snaps.entries()) {
    same(t, await fullClone(d, s.id, `s${i}.raw`), s.expected, `snapshot ${i} equals what was written before it`);
  }
  const second = await d.json('snapshot', 'show', 's1');
  t.ok(second.changedBlocks <= 3, `the second snapshot changed only the written blocks (${second.changedBlocks})`);
  io(t, uri, 'read -P 0x55 0 2M', 'read -P 0x22 5M 100k');
});

t.test('a snapshot taken during a stream of writes holds exactly the writes acknowledged before its instant', async (t) => {
  const { d, uri, img } = await cow(t);
  // qemu-io runs its commands one after another, each waiting for its reply: write i is sent only
  // after write i-1 was acknowledged. Each one straddles a 64 KiB granule boundary.
  const n = 200;
  const stride = 80 * 1024;
  const cmds = Array.from({ length: n }, (_, i) => `write -P ${i + 1} ${i * stride + 32 * 1024} 64k`);
  const writer = new Promise<number | null>((resolve) => {
    spawn('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri], { stdio: 'ignore' }).on('exit', resolve);
  });
  await d.json('snapshot', 'create', 'c', '--name', 'during');
  t.equal(await writer, 0, 'every write succeeded');
  const got = readFileSync(await fullClone(d, 'during', 'during.raw'));
  const before = readFileSync(img);
  const landed: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * stride + 32 * 1024;
    const region = got.subarray(at, at + 64 * 1024);
    const written = region.every((b) => b === i + 1);
    t.ok(written || region.equals(before.subarray(at, at + 64 * 1024)), `write ${i} is wholly in or wholly out`);
    landed.push(written);
  }
  const k = landed.indexOf(false) === -1 ? n : landed.indexOf(false);
  t.ok(landed.slice(k).every((w) => !w), `the writes in the snapshot are a prefix of the stream (${k} of ${n})`);
});

t.test('nbdinfo --map shows holes after TRIM and WRITE_ZEROES', async (t) => {
  const { uri } = await cow(t);
  io(t, uri, 'write -z -u 0 1M', 'discard 8M 2M');
  const map = run('nbdinfo', ['--map', uri]);
  t.equal(map.status, 0, map.out);
  const extents = map.out.trim().split('\n').map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number)) as Array<[number, number, number]>;
  const flagsAt = (off: number): number | undefined => extents.find(([o, len]) => off >= o && off < o + len)?.[2];
  t.equal(flagsAt(0), 3, 'the zeroed start of block 0 is a hole');
  t.equal(flagsAt(1 * MiB - 1), 3);
  t.equal(flagsAt(2 * MiB), 0, 'the rest of block 0 is data');
  t.equal(flagsAt(BLOCK), 3, 'the base ZERO block 1 is a hole');
  t.equal(flagsAt(8 * MiB), 3, 'the trimmed part of block 2 is a hole');
  t.equal(flagsAt(10 * MiB), 0, 'the rest of block 2 is data');
  io(t, uri, 'read -P 0 0 1M', 'read -P 0 8M 2M');
});

t.test('two clients write at once, each sees the other\'s writes', async (t) => {
  const { uri } = await cow(t);
  const writer = (pat: string, at: string): Promise<number | null> => new Promise((resolve) => {
    spawn('qemu-io', ['-f', 'raw', '-c', `write -P ${pat} ${at} 3M`, '-c', 'flush', uri], { stdio: 'ignore' }).on('exit', resolve);
  });
  t.same(await Promise.all([writer('0x61', '1M'), writer('0x62', '9M')]), [0, 0]);
  io(t, uri, 'read -P 0x61 1M 3M', 'read -P 0x62 9M 3M');
});

t.test('a client that dies in the middle of a write leaves the disk as it was', async (t) => {
  const { l, uri, expected } = await cow(t);
  const c = await RawClient.open(l.nbd);
  await c.greet();
  await c.go('c');
  // A 1 MiB write whose payload stops after 100 KiB: nothing of it may land.
  c.request(C.NBD_CMD_WRITE, 2 * MiB, MiB, 0, 7n, Buffer.alloc(100 * 1024, 0xee));
  c.close();
  io(t, uri, 'write -P 0x12 0 64k');
  io(t, expected, 'write -P 0x12 0 64k');
  same(t, uri, expected, 'only the second client\'s write is in');
});

t.test('writes flushed before a SIGKILL of the daemon are there after its restart', async (t) => {
  const l = layout(t);
  const { d, uri } = await cow(t, l);
  await d.json('snapshot', 'create', 'c', '--name', 'first');
  io(t, uri, 'write -P 0x77 3M 2M', 'flush', 'write -P 0x78 12M 64k -f');
  t.equal(await d.stop('SIGKILL'), null);
  const again = await startDaemon(t, l);
  const exp = await again.json('export', 'start', 'c', '--writable');
  io(t, exp.uri, 'read -P 0x77 3M 2M', 'read -P 0x78 12M 64k');
  // The dirty bits were persisted with the data: the next snapshot reads just those blocks.
  await again.json('snapshot', 'create', 'c', '--name', 'after');
  t.match(await again.json('snapshot', 'show', 'after'), { changedBlocks: 3, consistency: 'point-in-time' }, 'blocks 0, 1 and 3 changed');
  io(t, await fullClone(again, 'after', 'after.raw'), 'read -P 0x77 3M 2M', 'read -P 0x78 12M 64k');
});

t.test('a graceful stop flushes: writes never flushed by the client survive SIGTERM', async (t) => {
  const l = layout(t);
  const { d, uri } = await cow(t, l);
  io(t, uri, 'write -P 0x5a 6M 1M');
  t.equal(await d.stop('SIGTERM'), 0);
  const again = await startDaemon(t, l);
  const exp = await again.json('export', 'start', 'c', '--writable');
  io(t, exp.uri, 'read -P 0x5a 6M 1M');
});

t.test('rollback of a served COW disk is refused while a client is connected; --force drops it', async (t) => {
  const { d, l, uri } = await cow(t);
  await d.json('snapshot', 'create', 'c', '--name', 'one');
  io(t, uri, 'write -P 0x99 0 1M');
  const client = await RawClient.open(l.nbd);
  await client.greet();
  await client.go('c');
  const refused = await d.cli('rollback', 'c', 'one', '--json');
  t.equal(refused.code, 1);
  t.match(refused.json(), { error: { code: 'DiskInUse', message: /export c with 1 client/ } });
  await d.json('rollback', 'c', 'one', '--force');
  t.ok(await client.closes(), 'the client was dropped');
  same(t, uri, await fullClone(d, 'one', 'one.raw'), 'the disk reads as the snapshot again');
});

t.test('flatten writes raw and qcow2 images equal to the served disk', async (t) => {
  const { d, uri } = await cow(t);
  io(t, uri, 'write -P 0xa1 2M 3M', 'write -z 8M 4M');
  const raw = join(d.imageRoot, 'flat.raw');
  const qcow = join(d.imageRoot, 'flat.qcow2');
  t.match(await d.json('disk', 'flatten', 'c', raw), { path: raw, format: 'raw', sizeBytes: 4 * BLOCK });
  t.match(await d.json('disk', 'flatten', 'c', qcow, '--format', 'qcow2'), { path: qcow, format: 'qcow2' });
  same(t, uri, raw, 'raw');
  const r = run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', uri, qcow]);
  t.equal(r.status, 0, `qcow2: ${r.out}`);
  t.equal(run('qemu-img', ['check', '-f', 'qcow2', qcow]).status, 0, 'the qcow2 image checks clean');
});

t.test('the base of a COW disk cannot be deleted; an exported COW disk cannot be removed', async (t) => {
  const { d } = await cow(t);
  const del = await d.cli('snapshot', 'delete', 'base', '--json');
  t.equal(del.code, 1);
  t.match(del.json(), { error: { code: 'SnapshotHasClones', message: /copy-on-write disk c/ } });
  const rm = await d.cli('disk', 'remove', 'c', '--json');
  t.match(rm.json(), { error: { code: 'DiskExported' } });
  const again = await d.cli('export', 'start', 'c', '--writable', '--name', 'other', '--json');
  t.match(again.json(), { error: { code: 'DiskExported' } });
  const ro = await d.cli('export', 'start', 'vm', '--writable', '--json');
  t.match(ro.json(), { error: { code: 'NotCowDisk' } });
  await d.json('export', 'stop', 'c');
  await d.json('disk', 'remove', 'c');
  t.match(await d.json('snapshot', 'delete', 'base'), { name: 'base' });
});

t.test('export start of a disk without --writable says what it names and how a disk is served', async (t) => {
  const { d } = await cow(t);
  const cowDisk = await d.cli('export', 'start', 'c', '--json');
  t.equal(cowDisk.code, 1);
  t.match(cowDisk.json(), { error: { code: 'SnapshotNotFound', message: 'no snapshot "c"; copy-on-write disk c is served read-write, with --writable' } });
  const byId = await d.cli('export', 'start', (await d.json('disk', 'show', 'c')).id, '--json');
  t.match(byId.json(), { error: { code: 'SnapshotNotFound', message: /copy-on-write disk c is served read-write, with --writable/ } }, 'by id too');
  const image = await d.cli('export', 'start', 'vm');
  t.equal(image.code, 1);
  t.match(image.stderr, /^blocksnap: no snapshot "vm"; disk vm is an image file: an export serves one of its snapshots, or a copy-on-write disk \(clone --cow\) with --writable \[SnapshotNotFound\]/);
  const neither = await d.cli('export', 'start', 'nothing', '--json');
  t.match(neither.json(), { error: { code: 'SnapshotNotFound', message: 'no snapshot "nothing"' } }, 'a ref that names nothing is plainly not found');
});

t.test('a COW disk\'s snapshot is shown as point-in-time, not offline', async (t) => {
  const { d } = await cow(t);
  const r = await d.cli('snapshot', 'create', 'c', '--name', 'pit');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^consistency: +point-in-time \(a copy-on-write disk, taken between two of its writes\)$/m);
  t.notMatch(r.stdout, /offline/);
  t.match(await d.json('snapshot', 'show', 'pit'), { consistency: 'point-in-time' });
});
