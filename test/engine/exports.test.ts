import { join } from 'node:path';
import t, { type Test } from 'tap';
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../../src/nbd/constants';
import type { NbdBackend, ReadPiece } from '../../src/nbd/backend';
import { fillBlock, makeImage, MiB } from '../helpers/images';
import { openEngine, snapshot } from '../helpers/engine';

const BLOCK = 4 * MiB;

async function exported(t: Test) {
  const f = await openEngine(t);
  const img = makeImage(join(f.images, 'vm.img'), 3 * BLOCK + 8192);
  const b0 = fillBlock(img, 0, BLOCK, 'zero');
  const b2 = fillBlock(img, 2, BLOCK, 'two');
  const last = fillBlock(img, 3, BLOCK, 'tail', 8192);
  await f.engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(f.engine, 'vm', 'one');
  return { ...f, snap, b0, b2, last };
}

/** The backend's layout with each data piece read into a Buffer of its own, as `data`. */
async function readPieces(b: NbdBackend, offset: number, length: number): Promise<Array<ReadPiece & { data?: Buffer }>> {
  return Promise.all(b.layout(offset, length).map(async (p) => {
    if (p.zero) return p;
    const data = Buffer.alloc(p.length);
    await b.readInto(p.offset, p.length, data, 0);
    return { ...p, data };
  }));
}

t.test('exports are refused until the NBD server has an endpoint', async (t) => {
  const { engine } = await exported(t);
  t.throws(() => engine.exports.start('one'), { code: 'NbdNotEnabled' });
});

t.test('an export reads the snapshot from the store: data where stored, holes where ZERO', async (t) => {
  const { engine, snap, b0, b2, last } = await exported(t);
  engine.exports.setEndpoint('/run/test/nbd.sock');
  const info = engine.exports.start('one', { name: 'vm-one' });
  t.match(info, { name: 'vm-one', snapshotId: snap.id, sizeBytes: 3 * BLOCK + 8192, writable: false, connections: 0, uri: 'nbd+unix:///vm-one?socket=/run/test/nbd.sock' });
  t.same(engine.exports.names(), ['vm-one']);
  const backend = engine.exports.lookup('vm-one')!.backend;
  const pieces = await readPieces(backend, BLOCK - 4096, 2 * BLOCK + 8192);
  // Adjacent stored blocks may come as one piece: the pieces tile the range, ZERO blocks are holes.
  t.same(pieces.map((p) => [p.offset, p.length, p.data !== undefined]),
    [[BLOCK - 4096, 4096, true], [BLOCK, BLOCK, false], [2 * BLOCK, BLOCK + 4096, true]]);
  t.ok(pieces[0]!.data!.equals(b0.subarray(BLOCK - 4096)));
  t.ok(pieces[2]!.data!.subarray(0, BLOCK).equals(b2));
  t.ok(pieces[2]!.data!.subarray(BLOCK).equals(last.subarray(0, 4096)), 'the short last block');
  const again = await Promise.all([readPieces(backend, 0, 4096), readPieces(backend, 4096, 4096)]);
  t.ok(again[1][0]!.data!.equals(b0.subarray(4096, 8192)), 'concurrent reads of one block');
  t.same((await backend.extents(0, 3 * BLOCK + 8192, 1024)).map((e) => [e.length, e.flags]),
    [[BLOCK, 0], [BLOCK, NBD_STATE_HOLE | NBD_STATE_ZERO], [BLOCK + 8192, 0]]);
});

t.test('an exported snapshot is pinned until the export stops, and stop drops its clients', async (t) => {
  const { engine } = await exported(t);
  engine.exports.setEndpoint('/run/test/nbd.sock');
  engine.exports.start('one', { name: 'vm-one' });
  t.throws(() => engine.exports.start('one', { name: 'vm-one' }), { code: 'NameTaken' });
  t.throws(() => engine.exports.start('one', { name: '-x' }), { code: 'InvalidName' });
  await t.rejects(engine.deleteSnapshot('one'), { code: 'SnapshotBusy', message: /exported as vm-one/ });
  await t.rejects(engine.removeDisk('vm', { deleteSnapshots: true }), { code: 'SnapshotBusy' });
  const closed: string[] = [];
  const detach = engine.exports.lookup('vm-one')!.attach({ close: async (why) => { closed.push(why); } });
  t.equal(engine.exports.get('vm-one').connections, 1);
  t.equal(engine.exports.list().length, 1);
  t.match(await engine.exports.stop('vm-one'), { name: 'vm-one', connections: 0 });
  t.same(closed, ['the export was stopped']);
  detach();
  t.throws(() => engine.exports.get('vm-one'), { code: 'ExportNotFound' });
  await t.rejects(engine.exports.stop(''), { code: 'InvalidArgument' });
  t.match(await engine.deleteSnapshot('one'), { name: 'one' }, 'deletable once unexported');
});

t.test('a stopped export serves the requests its clients were running before its volume closes', async (t) => {
  const { engine, b0 } = await exported(t);
  engine.exports.setEndpoint('/run/test/nbd.sock');
  engine.exports.start('one', { name: 'vm-one' });
  const backend = engine.exports.lookup('vm-one')!.backend;
  let answered!: () => void;
  engine.exports.lookup('vm-one')!.attach({ close: () => new Promise<void>((resolve) => { answered = resolve; }) });
  let stopped = false;
  const stopping = engine.exports.stop('vm-one').then(() => { stopped = true; });
  t.throws(() => engine.exports.get('vm-one'), { code: 'ExportNotFound' }, 'gone for new clients at once');
  // A read the dropped connection is still running gets its bytes.
  t.ok((await readPieces(backend, 4096, 4096))[0]!.data!.equals(b0.subarray(4096, 8192)));
  t.notOk(stopped, 'stop waits for the connection to finish');
  await t.rejects(engine.deleteSnapshot('one'), { code: 'SnapshotBusy' }, 'still pinned meanwhile');
  answered();
  await stopping;
  await t.rejects(backend.readInto(0, 4096, Buffer.alloc(4096), 0), 'the volume is closed once the connection has gone');
  t.match(await engine.deleteSnapshot('one'), { name: 'one' });
});

t.test('a damaged block fails the read with DigestMismatch and a retry reads again', async (t) => {
  const { engine, dataDir } = await exported(t);
  engine.exports.setEndpoint('/run/test/nbd.sock');
  engine.exports.start('one', { name: 'e' });
  const { readdirSync, openSync, writeSync, closeSync } = await import('node:fs');
  const blocks = join(dataDir, 'blocks');
  for (const fan of readdirSync(blocks).filter((d) => /^[0-9a-f]{3}$/.test(d))) {
    for (const f of readdirSync(join(blocks, fan))) {
      const fd = openSync(join(blocks, fan, f), 'r+');
      writeSync(fd, Buffer.from('rot'), 0, 3, 200);
      closeSync(fd);
    }
  }
  const backend = engine.exports.lookup('e')!.backend;
  await t.rejects(readPieces(backend, 0, 512), { code: 'DigestMismatch' });
  await t.rejects(readPieces(backend, 0, 512), { code: 'DigestMismatch' }, 'not served from a cache of the failure');
  t.same(await readPieces(backend, BLOCK, 512), [{ offset: BLOCK, length: 512, zero: true }], 'ZERO blocks need no store read');
  await engine.close();
  t.same(engine.exports.list(), [], 'closing the engine ends every export');
});
