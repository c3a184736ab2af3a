/**
 * A user who can write inside an image root races the daemon reading a file the user named: the
 * file's directory is swapped for a symlink to a directory outside the roots, or the file for a
 * FIFO, after the path was checked and before the daemon opens it. The daemon, which reads with
 * its own rights, must never read a file outside the roots for the client, and a FIFO must not
 * hang it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, copyFileSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import { detectFormat, inspectImage } from '../../src/engine/image-access';
import type { OffsiteInternals } from '../../src/engine/offsite-internals';
import { SnapshotStreams } from '../../src/engine/streams';
import type { Job } from '../../src/engine/types';
import { openImageDir } from '../../src/native/index';
import { finished, openEngine, snapshot } from '../helpers/engine';
import { makeImage, MiB, randomData, writeAt } from '../helpers/images';

/** Swaps `dir` for a symlink to `outside`; the real directory goes on under `dir.real`. */
function swapForSymlink(dir: string, outside: string): string {
  renameSync(dir, `${dir}.real`);
  symlinkSync(outside, dir);
  return `${dir}.real`;
}

function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/** Frees an open(2) of `fifo` blocked waiting for a writer (only the unfixed reader gets there). */
function unblockFifo(fifo: string): void {
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch { /* nobody was blocked on it */ }
}

/** The job's end, or 'hung' if it has not ended after `ms`. */
async function endOf(engine: Engine, job: Job, ms = 10_000): Promise<Job | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), ms); });
  try {
    return await Promise.race([engine.waitJob(job.id), hung]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An engine whose disk `vm` had a snapshot, exported to a stream file that then went outside the
 * roots (the file an attacker wants imported: the daemon can read it, the attacker cannot), the
 * snapshot deleted so that the stream would import. `streams` runs imports with `beforeOpen`
 * called between the path check and the open: the check is done when the disk is resolved.
 */
async function withOutsideStream(t: Test): Promise<{
  engine: Engine; sub: string; outside: string; snapId: string;
  streams: (beforeOpen: () => void) => SnapshotStreams;
}> {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'vm.img'), 4 * MiB);
  writeAt(img, 0, randomData(4 * MiB));
  await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, 'vm');
  const outside = join(images, '..', 'outside'); // beside the image root, not in it
  mkdirSync(outside);
  await finished(engine, engine.offsite.streams.startExport(snap.id, join(images, 'secret.bsnap')));
  renameSync(join(images, 'secret.bsnap'), join(outside, 'vm.bsnap'));
  await engine.deleteSnapshot(snap.id);
  const sub = join(images, 'streams');
  mkdirSync(sub);
  writeFileSync(join(sub, 'vm.bsnap'), 'a file the client may read; not a stream');
  const x = engine.offsite.streams['x'];
  const streams = (beforeOpen: () => void): SnapshotStreams => new SnapshotStreams({
    ...x,
    resolveDisk: (ref) => {
      beforeOpen();
      return x.resolveDisk(ref);
    },
  } satisfies OffsiteInternals);
  return { engine, sub, outside, snapId: snap.id, streams };
}

t.test('an import whose source directory is swapped for a symlink after the check reads nothing outside the roots', async (t) => {
  const { engine, sub, outside, snapId, streams } = await withOutsideStream(t);
  let swapped = false;
  const job = streams(() => {
    swapForSymlink(sub, outside);
    swapped = true;
  }).startImport(join(sub, 'vm.bsnap'), 'vm');
  t.ok(swapped, 'the directory was swapped between the check and the open');
  const done = await endOf(engine, job);
  t.match(done, { state: 'failed', error: { code: 'NotAnImage', message: /symlink was swapped/ } });
  t.same(engine.listSnapshots().map((s) => s.id), [], `the outside stream's snapshot ${snapId} was not imported`);
  // The stream outside is a good one: what kept it out was the refusal.
  copyFileSync(join(outside, 'vm.bsnap'), join(`${sub}.real`, 'copied.bsnap'));
  t.match(await endOf(engine, engine.offsite.streams.startImport(join(`${sub}.real`, 'copied.bsnap'), 'vm')), { state: 'succeeded', result: { snapshotId: snapId } });
});

t.test('an import whose source is swapped for a symlink after the check reads nothing outside the roots', async (t) => {
  const { engine, sub, outside, streams } = await withOutsideStream(t);
  const job = streams(() => {
    rmSync(join(sub, 'vm.bsnap'));
    symlinkSync(join(outside, 'vm.bsnap'), join(sub, 'vm.bsnap'));
  }).startImport(join(sub, 'vm.bsnap'), 'vm');
  t.match(await endOf(engine, job), { state: 'failed', error: { code: 'NotAnImage' } });
  t.same(engine.listSnapshots(), []);
});

t.test('a FIFO or a directory as the stream source is refused (NotAnImage), given so or swapped in after the check, and never hangs the import', async (t) => {
  const { engine, sub, streams } = await withOutsideStream(t);
  const fifo = join(sub, 'pipe.bsnap');
  mkfifo(fifo);
  t.teardown(() => unblockFifo(fifo));
  mkdirSync(join(sub, 'dir.bsnap'));
  for (const [what, given] of [['a FIFO', fifo], ['a directory', join(sub, 'dir.bsnap')]] as const) {
    t.throws(() => engine.offsite.streams.startImport(given, 'vm'), { code: 'NotAnImage', message: /not a regular file/ }, `${what} given`);
  }

  const file = join(sub, 'vm.bsnap');
  const swaps: Array<[string, () => void, object]> = [
    ['a FIFO', () => { rmSync(file); mkfifo(file); }, { code: 'NotAnImage', message: /not a regular file/ }],
    ['a directory', () => { rmSync(file); mkdirSync(file); }, { code: 'NotAnImage', message: /not a regular file/ }],
    ['nothing', () => rmSync(file), { code: 'ImageNotFound', message: /removed or moved after it was checked/ }],
  ];
  for (const [what, swap, error] of swaps) {
    writeFileSync(file, 'a regular file when checked');
    const job = streams(swap).startImport(file, 'vm');
    const done = await endOf(engine, job);
    if (done === 'hung') unblockFifo(file);
    t.match(done, { state: 'failed', error }, `${what} swapped in`);
    rmSync(file, { recursive: true, force: true });
  }
  // Each failed open released the disk lock: the next import runs (and reads what it is given).
  writeFileSync(file, 'not a stream');
  t.match(await endOf(engine, engine.offsite.streams.startImport(file, 'vm')), { state: 'failed', error: { code: 'StreamCorrupt' } });
});

t.test('registering an image never reads its format or size through a directory swapped for a symlink, nor blocks on a FIFO', async (t) => {
  // The real path the engine checked, and the same path after the swap: what disk add and every
  // snapshot of a raw disk read, on the daemon's only thread.
  const root = t.testdir();
  const vms = join(root, 'images', 'vms');
  const outside = join(root, 'outside');
  mkdirSync(vms, { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(vms, 'disk.img'), Buffer.alloc(4096));
  const qcow2Magic = Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb]), Buffer.alloc(8188)]);
  writeFileSync(join(outside, 'disk.img'), qcow2Magic);
  const checked = join(vms, 'disk.img');
  t.equal(detectFormat(checked), 'raw');
  swapForSymlink(vms, outside);
  t.throws(() => detectFormat(checked), { code: 'NotAnImage', message: /symlink was swapped/ }, 'the format of the file outside is not read');
  t.throws(() => inspectImage(checked, 'raw', [join(root, 'images')]), { code: 'NotAnImage' }, 'nor its size');

  rmSync(vms);
  mkdirSync(vms);
  mkfifo(join(vms, 'disk.img'));
  t.teardown(() => unblockFifo(join(vms, 'disk.img')));
  t.throws(() => detectFormat(checked), { code: 'NotAnImage', message: /not a regular file/ }, 'a FIFO is refused without waiting for a writer');
  t.throws(() => inspectImage(checked, 'raw', [join(root, 'images')]), { code: 'NotAnImage' });
});

t.test('openFile of a held directory opens regular files only, never through a symlink', async (t) => {
  // A short path: a socket's name must fit in sun_path.
  const dir = mkdtempSync(join(tmpdir(), 'bs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'file'), 'content');
  symlinkSync(join(dir, 'file'), join(dir, 'link'));
  mkfifo(join(dir, 'fifo'));
  t.teardown(() => unblockFifo(join(dir, 'fifo')));
  mkdirSync(join(dir, 'sub'));
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, 'sock'), resolve));
  t.teardown(() => server.close());

  const d = openImageDir(dir);
  t.teardown(() => d.release());
  const fd = d.openFile('file');
  t.ok(fd >= 0);
  closeSync(fd);
  t.throws(() => d.openFile('link'), { code: 'NotAnImage', message: /is a symlink/ });
  for (const name of ['fifo', 'sub', 'sock']) t.throws(() => d.openFile(name), { code: 'NotAnImage', message: /not a regular file/ }, name);
  t.throws(() => d.openFile('missing'), { code: 'ImageNotFound' });
  t.throws(() => d.openFile('../file'), { code: 'InvalidArgument' }, 'one path component only');
});
