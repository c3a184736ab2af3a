/**
 * A virtual size with more blocks than a snapshot may hold (2^27, the most a stream or a remote
 * carries) is refused with ImageTooLarge before anything is allocated for it: a qcow2 header can
 * claim petabytes in a file of a few MiB, and a scan holds 32 bytes a block for the whole size.
 * With 64 KiB blocks the limit is 8 TiB.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import { checkBlockCount } from '../../src/engine/image-access';
import { MAX_BLOCK_SIZE } from '../../src/store/format';
import { openEngine, refusal } from '../helpers/engine';
import { haveQemu, qemuImg } from '../helpers/qemu';

const BS = 64 * 1024;
const skip = haveQemu();

t.test('disk add refuses an image of more blocks than a snapshot holds, giving the size and the limit', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = join(images, 'big.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', img, '9T');
  const r = await refusal(() => engine.addDisk({ path: img }));
  t.equal(r.code, 'ImageTooLarge', r.message);
  t.match(r.message, `(${9 * 2 ** 40} bytes), ${9 * 2 ** 24} blocks of 64 KiB; a snapshot holds at most ${2 ** 27} blocks`);
  t.same(engine.listDisks(), [], 'nothing registered');
});

t.test('disk add takes an image of exactly the most blocks a snapshot holds', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = join(images, 'edge.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', img, '8T');
  t.equal((await engine.addDisk({ path: img })).sizeBytes, 2 ** 27 * BS);
});

t.test('a snapshot of an image grown past the limit since disk add is refused without a snapshot record', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  const img = join(images, 'grown.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', img, '1M');
  await engine.addDisk({ path: img, name: 'grown' });
  qemuImg('resize', '-q', '-f', 'qcow2', img, '1P');
  const r = await refusal(() => engine.startSnapshot('grown'));
  t.equal(r.code, 'ImageTooLarge', r.message);
  t.same(engine.listSnapshots('grown'), [], 'no failed snapshot is left behind');
});

t.test('a group snapshot with a member grown past the limit is refused before any member starts', { skip }, async (t) => {
  const { engine, images } = await openEngine(t, { blockSize: BS });
  for (const n of ['a', 'b']) {
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', join(images, `${n}.qcow2`), '1M');
    await engine.addDisk({ path: join(images, `${n}.qcow2`), name: n });
  }
  qemuImg('resize', '-q', '-f', 'qcow2', join(images, 'b.qcow2'), '1P');
  const r = await refusal(() => engine.groups.create({ disks: ['a', 'b'] }));
  t.equal(r.code, 'ImageTooLarge', r.message);
  t.same([...engine.listSnapshots('a'), ...engine.listSnapshots('b')], [], 'no member snapshot was made');
  t.same(engine.groups.list(), [], 'no group record was made');
});

t.test('an image of 2^63 - 1 bytes is refused with its exact size and block count', async (t) => {
  const r = await refusal(() => checkBlockCount('/images/huge.raw', 2n ** 63n - 1n, BS));
  t.equal(r.code, 'ImageTooLarge', r.message);
  t.match(r.message, '(9223372036854775807 bytes), 140737488355328 blocks of 64 KiB');
});

t.test('one byte past the most blocks of the largest block size is refused, not rounded into the limit', async (t) => {
  t.equal(checkBlockCount('/images/edge.raw', 2n ** 53n, MAX_BLOCK_SIZE), 2 ** 53, 'the limit itself is taken, as a number');
  const r = await refusal(() => checkBlockCount('/images/over.raw', 2n ** 53n + 1n, MAX_BLOCK_SIZE));
  t.equal(r.code, 'ImageTooLarge', r.message);
  t.match(r.message, `(9007199254740993 bytes), ${2 ** 27 + 1} blocks of 64 MiB`);
});

// Sizes past 2^53 come from the file's stat as they are: the raw file needs a filesystem that
// takes files of 2^63 - 1 bytes (tmpfs does, ext4 does not).
function hugeRawFile(): { dir: string; img: string } | null {
  try {
    const dir = mkdtempSync('/dev/shm/blocksnap-too-large-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const img = join(dir, 'huge.raw');
    // truncate(1): Node's own truncate takes no length past 2^53.
    execFileSync('truncate', ['-s', String(2n ** 63n - 1n), img], { stdio: 'pipe' });
    return { dir, img };
  } catch {
    return null;
  }
}
const huge = hugeRawFile();

t.test('disk add of a sparse raw file of 2^63 - 1 bytes gives its exact size', { skip: huge === null && 'no file of 2^63 - 1 bytes on /dev/shm' }, async (t) => {
  const { dir, img } = huge!;
  const engine = await Engine.open({ dataDir: join(t.testdir(), 'data'), imageRoots: [dir], blockSize: BS });
  t.teardown(() => engine.close());
  const r = await refusal(() => engine.addDisk({ path: img, format: 'raw' }));
  t.equal(r.code, 'ImageTooLarge', r.message);
  t.match(r.message, '(9223372036854775807 bytes)');
});
