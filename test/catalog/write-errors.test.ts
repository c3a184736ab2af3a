/**
 * Classification of failed catalog writes, on the error objects lmdb-js really throws. The
 * fixtures below were captured from lmdb 3.5.6 committing a transaction on a full tmpfs and a full
 * ext4 loop mount (and the first one is what an operator's daemon answered); the last subtest
 * makes them again on a small filesystem (root only) and checks that they still look like this.
 */
import { createHash } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import t from 'tap';
import { BlocksnapError } from '../../src/errors';
import { catalogWriteError, classifyCatalogWrite, fsSpace, nearlyFullBytes, statfsSpace, storageErrno, type FsSpace } from '../../src/catalog/write-errors';
import { ballast, smallFsOrSkip } from '../faults/small-fs';

const MiB = 1024 * 1024;

/** An Error with an own `code` property: what lmdb-js's throwLmdbError builds (Error::New, then Set("code", errno)). */
function lmdbError(message: string, code: number): Error {
  return Object.assign(new Error(message), { code });
}

const CAPTURED = {
  /** Not one byte of the write fit (pwritev failed): strerror, then LMDB's own detail. */
  enospc: lmdbError('No space left on device: Attempting to write page at position 77824, size 262144, blocks 64, buffer sizes 4096 4096 4096', 28),
  /** From the operator's report: a one-page write, with LMDB printing an uninitialised iovec. */
  enospcOperator: lmdbError('No space left on device: Attempting to write page at position 86016, size 4096, blocks 1, buffer sizes 4096 4096 -243268375', 28),
  /** Part of a multi-page write fit: LMDB turns the short write into EIO, with no detail. */
  shortWrite: lmdbError('Input/output error', 5),
};

const DATA_DIR = '/var/lib/blocksnap';
const full = { availableBytes: 12 * 1024, totalBytes: 100 * 1024 * MiB };
const roomy = { availableBytes: 40 * 1024 * MiB, totalBytes: 100 * 1024 * MiB };

t.test('the errno of a storage failure, from the number lmdb-js gives or from the text', async (t) => {
  t.equal(storageErrno(CAPTURED.enospc), 'ENOSPC');
  t.equal(storageErrno(CAPTURED.enospcOperator), 'ENOSPC');
  t.equal(storageErrno(CAPTURED.shortWrite), 'EIO');
  t.equal(storageErrno(lmdbError('Disk quota exceeded', 122)), 'EDQUOT');
  t.equal(storageErrno(new Error('No space left on device: Attempting to write page at position 0')), 'ENOSPC', 'by text when the code is lost');
  t.equal(storageErrno(new Error('Input/output error')), 'EIO', 'by text when the code is lost');
  t.equal(storageErrno(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })), 'ENOSPC', 'a Node fs error');
  t.equal(storageErrno(lmdbError('MDB_MAP_FULL: Environment mapsize limit reached', -30792)), null, 'another LMDB error is left alone');
  t.equal(storageErrno(lmdbError('Read-only file system: Attempting to write page at position 77824, size 4096, blocks 1, buffer sizes 4096 677636762 350517072', 30)), 'EROFS');
  t.equal(storageErrno(lmdbError('Operation not permitted: Attempting to write page at position 81920', 1)), 'EPERM');
  t.equal(storageErrno(new Error('Permission denied')), 'EACCES', 'by text when the code is lost');
  t.equal(storageErrno(lmdbError('Too many open files', 24)), null, 'another errno is left alone');
  t.equal(storageErrno(new BlocksnapError('SnapshotNotFound', 'No space left on device')), null, 'an error the transaction threw itself');
  t.equal(storageErrno(new TypeError('x is undefined')), null);
  t.equal(storageErrno('No space left on device'), null, 'not an Error');
});

t.test('a filesystem\'s space is its statfs figures: what an unprivileged user may take, or with root\'s reserve', async (t) => {
  const s = { blocks: 1000, bfree: 300, bavail: 250, bsize: 4096 };
  t.same(statfsSpace(s), { availableBytes: 250 * 4096, totalBytes: 1000 * 4096 });
  t.same(statfsSpace(s, true), { availableBytes: 300 * 4096, totalBytes: 1000 * 4096 });
});

t.test('a filesystem that reports 0 blocks in all keeps no figures, and is not full', async (t) => {
  // What ramfs, tmpfs with size=0 and many FUSE filesystems report.
  t.equal(statfsSpace({ blocks: 0, bfree: 0, bavail: 0, bsize: 4096 }), null);
  t.equal(statfsSpace({ blocks: 0, bfree: 0, bavail: 0, bsize: 4096 }, true), null);
});

t.test('ENOSPC and EDQUOT are NoSpace naming the data dir', async (t) => {
  for (const err of [CAPTURED.enospc, CAPTURED.enospcOperator]) {
    const f = classifyCatalogWrite(err, DATA_DIR, full)!;
    t.equal(f.code, 'NoSpace');
    t.equal(f.what, `the catalog could not be written: the filesystem of the data dir ${DATA_DIR} is full (ENOSPC)`);
    t.match(f.details, { dataDir: DATA_DIR, errno: 'ENOSPC', cause: 'No space left on device', availableBytes: full.availableBytes }, 'strerror stays in the details, not LMDB\'s page and buffer sizes');
  }
  t.equal(classifyCatalogWrite(CAPTURED.enospc, DATA_DIR, roomy)?.code, 'NoSpace', 'whatever statfs says afterwards');
  t.equal(classifyCatalogWrite(CAPTURED.enospc, DATA_DIR, null)?.code, 'NoSpace', 'or when it cannot be read');
  t.match(classifyCatalogWrite(lmdbError('Disk quota exceeded', 122), DATA_DIR, roomy), { code: 'NoSpace', what: /over the disk quota .*\(EDQUOT\)/ });
  const e = catalogWriteError(classifyCatalogWrite(CAPTURED.enospc, DATA_DIR, full)!, 'Free space on that filesystem');
  t.ok(e instanceof BlocksnapError);
  t.match(e.toJSON(), { code: 'NoSpace', message: `the catalog could not be written: the filesystem of the data dir ${DATA_DIR} is full (ENOSPC). Free space on that filesystem` });
  t.notMatch(e.message, /Attempting to write page/, 'LMDB\'s page positions are not the message');
});

t.test('EIO is NoSpace on a (nearly) full filesystem, IOError with space free', async (t) => {
  const f = classifyCatalogWrite(CAPTURED.shortWrite, DATA_DIR, full)!;
  t.equal(f.code, 'NoSpace', 'a short write on a full filesystem');
  t.match(f.what, new RegExp(`data dir ${DATA_DIR} is full \\(12 KiB free\\).*I/O error \\(EIO\\).*lack of space, most likely not a failing disk`));
  const almost = { availableBytes: 900 * 1024, totalBytes: 24 * MiB };
  t.equal(classifyCatalogWrite(CAPTURED.shortWrite, DATA_DIR, almost)?.code, 'NoSpace', 'what the part that fit left over still counts as full');
  const io = classifyCatalogWrite(CAPTURED.shortWrite, DATA_DIR, roomy)!;
  t.equal(io.code, 'IOError', 'with 40 GiB free it is an I/O error');
  t.match(io.what, /I\/O error \(EIO\) .*Input\/output error.*B free, so this is not lack of space: check that disk/);
  t.equal(classifyCatalogWrite(CAPTURED.shortWrite, DATA_DIR, null)?.code, 'IOError', 'free space unknown: the error as it is');
  t.equal(nearlyFullBytes(24 * MiB), Math.floor(24 * MiB / 20), 'a twentieth of a small filesystem');
  t.equal(nearlyFullBytes(4 * MiB), MiB, 'at least 1 MiB');
  t.equal(nearlyFullBytes(10 * 1024 * 1024 * MiB), 64 * MiB, 'at most 64 MiB');
});

t.test('a read-only filesystem or a catalog file that may not be written is an IOError saying so', async (t) => {
  const rofs = classifyCatalogWrite(lmdbError('Read-only file system: Attempting to write page at position 77824, size 4096, blocks 1, buffer sizes 4096 677636762 350517072', 30), DATA_DIR, roomy)!;
  t.match(rofs, { code: 'IOError', errno: 'EROFS', details: { cause: 'Read-only file system' } });
  t.match(rofs.what, new RegExp(`data dir ${DATA_DIR} is read-only \\(EROFS\\); .*remount it read-write`));
  t.notMatch(rofs.what, /buffer sizes/, 'LMDB\'s uninitialised numbers are not the message');
  const eperm = classifyCatalogWrite(lmdbError('Operation not permitted: Attempting to write page at position 81920, size 4096, blocks 1, buffer sizes 4096 7 0', 1), DATA_DIR, roomy)!;
  t.match(eperm, { code: 'IOError', errno: 'EPERM' });
  t.match(eperm.what, /may not be written by the daemon \(EPERM\); check the owner, mode and attributes/);
});

t.test('errors that are not storage failures are not classified', async (t) => {
  t.equal(classifyCatalogWrite(new BlocksnapError('Internal', 'snapshot changed state during its job'), DATA_DIR, full), null);
  t.equal(classifyCatalogWrite(lmdbError('MDB_CORRUPTED: Located page was wrong type', -30796), DATA_DIR, full), null);
});

t.test('the errors lmdb-js throws on a full filesystem look like the fixtures', async (t) => {
  // Safe to provoke here, unlike in the daemon (Catalog.txn refuses such writes first): a small
  // environment's first write is 64 pages at a low position, so LMDB's message stays under the
  // 100 bytes it formats it into.
  const small = smallFsOrSkip(t, 'bswe-', 16);
  if (small === null) return;
  const { fs } = small;
  t.comment(`on a ${fs.kind}`);
  const digest = (i: number): Buffer => createHash('sha256').update(`w-${i}`).digest();
  const capture = (leave: number, dir: string): { err: Error; space: FsSpace | null } => {
    const root = open({ path: join(fs.dir, dir, 'catalog.mdb'), compression: false });
    const maps = root.openDB<Buffer, [string, number]>({ name: 'maps', encoding: 'binary' });
    root.transactionSync(() => { for (let i = 0; i < 300; i++) maps.putSync(['s1', i], digest(i)); });
    const b = ballast(fs.dir, leave);
    let thrown: unknown = null;
    try {
      root.transactionSync(() => { for (let i = 0; i < 5000; i++) maps.putSync(['s2', i], digest(i + 1e6)); });
    } catch (err) {
      thrown = err;
    }
    const space = fsSpace(fs.dir);
    t.equal(maps.get(['s2', 0]), undefined, 'the failed transaction left nothing');
    t.ok(maps.get(['s1', 299]), 'and the committed one is intact');
    void root.close();
    unlinkSync(b);
    return { err: thrown as Error, space };
  };
  const { err: enospc, space: atEnospc } = capture(0, 'a');
  t.ok(enospc instanceof Error && enospc.constructor === Error, 'a plain Error');
  t.same(Object.keys(enospc), ['code'], 'with an own `code` and nothing else');
  t.equal((enospc as { code?: unknown }).code, 28, 'the errno as a number');
  t.match(enospc.message, /^No space left on device: Attempting to write page at position \d+, size \d+, blocks \d+, buffer sizes/, 'strerror and LMDB\'s detail');
  t.equal(classifyCatalogWrite(enospc, fs.dir, atEnospc)?.code, 'NoSpace');
  const { err: eio, space: atEio } = capture(64 * 1024, 'b');
  t.same({ keys: Object.keys(eio), code: (eio as { code?: unknown }).code, message: eio.message },
    { keys: ['code'], code: 5, message: 'Input/output error' }, 'a write that partly fits: a bare EIO');
  t.equal(classifyCatalogWrite(eio, fs.dir, atEio)?.code, 'NoSpace', `with what statfs says then (${atEio?.availableBytes} bytes free)`);
});
