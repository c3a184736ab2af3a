/**
 * qcow2 backing names that lead outside the image roots, against the real daemon. A backing name
 * is as much a client's path as the image's: the daemon must refuse it before it opens the file,
 * since opening it reads, with the daemon's rights, a file the client may not read (and an error
 * describing it, "not a qcow2 image", "does not exist", tells the client about it), and opening a
 * FIFO or a device can block or have side effects. Each FIFO here has a writer blocked opening
 * it: the writer's open returns the moment anything opens the FIFO for reading.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Job } from '../../src/engine/types';
import { sleep } from '../crash/daemon-process';
import { haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { daemonWithOutside, type DaemonWithOutside } from './daemon-with-outside';

const BLOCK = 64 * 1024;
/** Far longer than a refusal takes, even on a loaded machine; a daemon that waited on a FIFO would pass it. */
const PROMPT_MS = 60_000;

function setUp(t: Test): Promise<DaemonWithOutside> {
  return daemonWithOutside(t, BLOCK);
}

/** The error code of a call (a job that failed counts as its error), or 'ok'; fails after PROMPT_MS. */
async function outcome(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${PROMPT_MS} ms`)), PROMPT_MS); });
  try {
    const r = await Promise.race([p, late]);
    const job = r as Partial<Job> | undefined;
    if (job?.state === 'failed') return { code: job.error!.code, message: job.error!.message };
    return { code: 'ok', message: '' };
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code ?? 'timeout', message: e.message };
  } finally {
    clearTimeout(timer);
  }
}

interface Fifo { path: string; opened(): Promise<boolean> }

/** A FIFO at `path` with a writer blocked opening it, which notes when a reader opened it. */
async function watchedFifo(t: Test, path: string): Promise<Fifo> {
  if (spawnSync('mkfifo', [path]).status !== 0) throw new Error(`mkfifo ${path} failed`);
  const writer: ChildProcess = spawn(process.execPath, ['-e', "require('fs').openSync(process.argv[1], 'w'); process.stdout.write('opened')", path],
    { stdio: ['ignore', 'pipe', 'ignore'] });
  let opened = false;
  writer.stdout!.on('data', () => { opened = true; });
  const exited = new Promise((r) => writer.once('exit', r));
  t.teardown(async () => {
    if (writer.exitCode === null && writer.signalCode === null) writer.kill('SIGKILL');
    await exited;
  });
  // Only a writer already blocked in open(2) sees a reader come and go.
  for (let i = 0; i < 200; i++) {
    let wchan = '';
    try {
      wchan = readFileSync(`/proc/${writer.pid}/wchan`, 'utf8');
    } catch { /* not yet */ }
    if (wchan.includes('partner') || wchan.includes('fifo')) break;
    await sleep(10);
  }
  await sleep(50);
  // The writer's report of a reader takes a moment to arrive.
  return { path, opened: async () => { await sleep(300); return opened; } };
}

/** A qcow2 overlay at `path` naming `backing` (not opened: -u). `format` null: the header names no format, so a reader probes. */
function overlay(path: string, backing: string, format: 'raw' | 'qcow2' | null): void {
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', format ?? 'raw', path, '1M');
  if (format === null) dropBackingFormat(path);
}

/** Turns the backing format extension into one of an unknown type, which QEMU and the reader skip. */
function dropBackingFormat(path: string): void {
  const bytes = readFileSync(path);
  const at = bytes.subarray(0, 65536).indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]));
  if (at < 0 || at % 8 !== 0) throw new Error(`no backing format extension in ${path}`);
  bytes.writeUInt32BE(0x6e6f6e65, at);
  writeFileSync(path, bytes);
}

const skip = haveQemu();

t.test('disk add refuses a backing file outside the roots without opening it', { skip }, async (t) => {
  const { c, root, outside } = await setUp(t);
  const add = (path: string): Promise<{ code: string; message: string }> => outcome(c.call('disk.add', { path }));

  for (const format of ['raw', null] as const) {
    const fifo = await watchedFifo(t, join(outside, `fifo-${format ?? 'probed'}`));
    const img = join(root, `over-fifo-${format ?? 'probed'}.qcow2`);
    overlay(img, fifo.path, format);
    const r = await add(img);
    t.equal(r.code, 'PathNotAllowed', `a FIFO outside the roots, backing format ${format ?? 'probed'}: ${r.message}`);
    t.match(r.message, /outside every image root/);
    t.notOk(await fifo.opened(), 'the FIFO was never opened');
  }

  // The backing name is a symlink inside the root: QEMU follows it, and so does the check.
  const viaLink = await watchedFifo(t, join(outside, 'fifo-via-link'));
  symlinkSync(viaLink.path, join(root, 'base-link'));
  overlay(join(root, 'over-link.qcow2'), 'base-link', 'raw');
  const linked = await add(join(root, 'over-link.qcow2'));
  t.equal(linked.code, 'PathNotAllowed', 'a backing name that is a symlink to a FIFO outside');
  t.match(linked.message, /has the backing file \S*\/base-link, which is outside every image root or leads out of them through a symlink$/,
    'the message fits a name inside a root that leads out, and does not tell where');
  t.notOk(await viaLink.opened(), 'the FIFO behind the symlink was never opened');

  // Inside the roots, a FIFO is no image either, and is refused unopened as well.
  const inside = await watchedFifo(t, join(root, 'fifo-inside'));
  overlay(join(root, 'over-inside.qcow2'), inside.path, null);
  t.equal((await add(join(root, 'over-inside.qcow2'))).code, 'NotAnImage', 'a FIFO inside the roots as backing file');
  t.notOk(await inside.opened(), 'the FIFO inside the roots was never opened');

  t.same(await c.call('disk.list'), [], 'nothing registered');
});

t.test('the refusal of a backing file outside the roots says nothing about that file', { skip }, async (t) => {
  const { c, root, outside } = await setUp(t);
  const add = (path: string): Promise<{ code: string; message: string }> => outcome(c.call('disk.add', { path }));
  const corrupt = join(outside, 'corrupt.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', corrupt, '1M');
  const bytes = readFileSync(corrupt);
  bytes.writeUInt32BE(40, 20); // cluster bits 40
  writeFileSync(corrupt, bytes);
  const plain = join(outside, 'plain.raw');
  writeFileSync(plain, Buffer.alloc(BLOCK, 1));
  const hasDevNull = existsSync('/dev/null');

  const cases: Array<[string, string, 'raw' | 'qcow2' | null]> = [
    ['a corrupt qcow2 image', corrupt, 'qcow2'],
    ['a raw file named as qcow2', plain, 'qcow2'],
    ['a raw file whose format is probed', plain, null],
    ['a file that does not exist', join(outside, 'missing.qcow2'), 'qcow2'],
    ['a relative name leading out of the root', '../outside/corrupt.qcow2', 'qcow2'],
    ...(hasDevNull ? [['a device', '/dev/null', 'raw'] as [string, string, 'raw']] : []),
  ];
  for (const [i, [what, backing, format]] of cases.entries()) {
    const img = join(root, `over-${i}.qcow2`);
    overlay(img, backing, format);
    const r = await add(img);
    t.equal(r.code, 'PathNotAllowed', `${what}: ${r.message}`);
    t.notMatch(r.message, /malformed|not a qcow2|does not exist|not a regular file|cluster/, `${what}: the message describes nothing of the file`);
  }
});

t.test('an image given through a symlink whose backing name QEMU would resolve to a FIFO outside the roots is refused without opening it', { skip }, async (t) => {
  const { c, root } = await setUp(t);
  // From the real path, ../base.raw is root/a/base.raw; from the symlink in the root it is
  // base.raw in the directory above the root, outside every root.
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  qemuImg('create', '-q', '-f', 'raw', join(root, 'a', 'base.raw'), '1M');
  overlay(join(root, 'a', 'b', 'vm.qcow2'), '../base.raw', 'raw');
  symlinkSync(join(root, 'a', 'b', 'vm.qcow2'), join(root, 'vm.qcow2'));
  const fifo = await watchedFifo(t, join(root, '..', 'base.raw'));
  const r = await outcome(c.call('disk.add', { path: join(root, 'vm.qcow2') }));
  t.equal(r.code, 'BackingFileAmbiguous', r.message);
  t.notOk(await fifo.opened(), 'the FIFO QEMU would open from the given path was never opened');
});

t.test('a registered overlay rebased onto a FIFO outside the roots is refused by snapshot and rollback without opening it', { skip }, async (t) => {
  const { c, root, outside } = await setUp(t);
  const base = join(root, 'base.raw');
  qemuImg('create', '-q', '-f', 'raw', base, '1M');
  qemuIo(base, 'raw', `write -P 0x11 0 ${BLOCK}`);
  const img = join(root, 'vm.qcow2');
  overlay(img, 'base.raw', null);
  qemuIo(img, 'qcow2', `write -P 0x22 ${BLOCK} ${BLOCK}`);
  await c.call('disk.add', { path: img, name: 'vm' });
  const first = await c.call<Job>('snapshot.create', { disk: 'vm', wait: true });
  t.equal(first.state, 'succeeded', 'a chain inside the roots, its format probed, is snapshotted');
  const snapshotId = (first.result as { id: string }).id;

  const fifo = await watchedFifo(t, join(outside, 'fifo'));
  qemuImg('rebase', '-q', '-u', '-b', fifo.path, '-F', 'raw', img);
  const snap = await outcome(c.call('snapshot.create', { disk: 'vm', wait: true }));
  t.equal(snap.code, 'PathNotAllowed', `snapshot: ${snap.message}`);
  t.notOk(await fifo.opened(), 'the snapshot never opened the FIFO');
  const back = await outcome(c.call('rollback', { disk: 'vm', snapshot: snapshotId, wait: true }));
  t.equal(back.code, 'PathNotAllowed', `rollback: ${back.message}`);
  t.notOk(await fifo.opened(), 'the rollback never opened the FIFO');
  const disk = (await c.call<Array<{ pendingRollback: unknown }>>('disk.list'))[0]!;
  t.equal(disk.pendingRollback, null, 'the refused rollback was not journaled');
});
