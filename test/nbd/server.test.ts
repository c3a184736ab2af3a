import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { NbdServer } from '../../src/nbd/server';
import * as C from '../../src/nbd/constants';
import { MemoryBackend, table } from './fixtures/memory-backend';
import { RawClient } from './fixtures/raw-client';
import { attached } from './fixtures/serve';

const silent = { debug() {}, info() {}, warn() {} };
const KiB = 1024;
const MiB = 1024 * KiB;

async function serve(t: Test) {
  // A Unix socket path must stay under 108 bytes: not in tap's deep fixture directory.
  const dir = mkdtempSync(join(tmpdir(), 'bsnbd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'nbd.sock');
  const ro = new MemoryBackend(1 * MiB, false);
  await ro.write(0, Buffer.alloc(64 * KiB, 0xab), false);
  const rw = new MemoryBackend(4 * MiB, true);
  const exports = table({ ro, rw });
  const server = new NbdServer(exports, { socketPath, socketMode: 0o660 }, silent);
  await server.listen();
  t.teardown(() => server.close());
  const uri = (name: string): string => `nbd+unix:///${name}?socket=${socketPath}`;
  return { socketPath, ro, rw, exports, server, uri };
}

/** Runs a client asynchronously: the server under test lives in this process's event loop. */
function tool(cmd: string, args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, out: stdout + stderr });
    });
  });
}

t.test('the greeting is fixed newstyle, and unknown client flags close only that connection', async (t) => {
  const s = await serve(t);
  const good = await attached(s.socketPath, 'ro');
  const bad = await RawClient.open(s.socketPath);
  const hello = await bad.greet(0x80);
  t.equal(hello.readBigUInt64BE(0), C.NBDMAGIC);
  t.equal(hello.readBigUInt64BE(8), C.IHAVEOPT);
  t.equal(hello.readUInt16BE(16), C.NBD_FLAG_FIXED_NEWSTYLE | C.NBD_FLAG_NO_ZEROES);
  t.ok(await bad.closes(), 'the server hung up on the unknown flag');
  good.request(C.NBD_CMD_READ, 0, 4096);
  t.same(await good.simpleReply(), { error: 0, handle: 1n }, 'another client goes on');
  t.ok((await good.read(4096)).equals(Buffer.alloc(4096, 0xab)));
  good.close();
});

t.test('malformed options close the connection; unknown ones are answered and haggling goes on', async (t) => {
  const s = await serve(t);
  const noMagic = await RawClient.open(s.socketPath);
  await noMagic.greet();
  noMagic.write(Buffer.alloc(16, 0x41));
  t.ok(await noMagic.closes(), 'an option without IHAVEOPT closes');

  const huge = await RawClient.open(s.socketPath);
  await huge.greet();
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(C.IHAVEOPT, 0);
  h.writeUInt32BE(C.NBD_OPT_GO, 8);
  h.writeUInt32BE(0xffffffff, 12);
  huge.write(h);
  t.ok(await huge.closes(), 'a 4 GiB option closes');

  const c = await RawClient.open(s.socketPath);
  await c.greet();
  c.option(99);
  t.match(await c.reply(), { option: 99, type: C.NBD_REP_ERR_UNSUP });
  c.option(C.NBD_OPT_STARTTLS);
  t.match(await c.reply(), { type: C.NBD_REP_ERR_POLICY });
  c.option(C.NBD_OPT_LIST, Buffer.from('x'));
  t.match(await c.reply(), { type: C.NBD_REP_ERR_INVALID });
  c.option(C.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1])); // name length overruns the data
  t.match(await c.reply(), { type: C.NBD_REP_ERR_INVALID });
  c.option(C.NBD_OPT_SET_META_CONTEXT, Buffer.alloc(8));
  t.match(await c.reply(), { type: C.NBD_REP_ERR_INVALID }, 'meta contexts need structured replies first');
  const unknown = await c.go('nope');
  t.equal(unknown[0]!.type, C.NBD_REP_ERR_UNKNOWN);
  c.option(C.NBD_OPT_LIST);
  const names: string[] = [];
  for (let r = await c.reply(); r.type === C.NBD_REP_SERVER; r = await c.reply()) names.push(r.data.subarray(4).toString());
  t.same(names.sort(), ['ro', 'rw']);
  const go = await c.go('ro');
  const info = go.find((r) => r.data.readUInt16BE(0) === C.NBD_INFO_EXPORT)!;
  t.equal(Number(info.data.readBigUInt64BE(2)), 1 * MiB);
  t.ok(info.data.readUInt16BE(10) & C.NBD_FLAG_READ_ONLY, 'read-only is advertised');
  t.equal(go[go.length - 1]!.type, C.NBD_REP_ACK);
  c.close();

  const old = await RawClient.open(s.socketPath);
  await old.greet();
  old.option(C.NBD_OPT_EXPORT_NAME, Buffer.from('missing'));
  t.ok(await old.closes(), 'NBD_OPT_EXPORT_NAME of an unknown export ends the session');

  const abort = await RawClient.open(s.socketPath);
  await abort.greet();
  abort.option(C.NBD_OPT_ABORT);
  t.match(await abort.reply(), { type: C.NBD_REP_ACK });
  t.ok(await abort.closes());
});

t.test('invalid requests get error replies; a bad request magic or a half-sent write closes only that connection', async (t) => {
  const s = await serve(t);
  const c = await attached(s.socketPath, 'ro');
  c.request(C.NBD_CMD_READ, 1 * MiB - 10, 20, 0, 2n);
  t.same(await c.simpleReply(), { error: C.NBD_EINVAL, handle: 2n }, 'a read past the end');
  c.request(C.NBD_CMD_WRITE, 0, 4, 0, 3n, Buffer.from('abcd'));
  t.same(await c.simpleReply(), { error: C.NBD_EPERM, handle: 3n }, 'a write to a read-only export');
  c.request(C.NBD_CMD_TRIM, 0, 4096, 0, 4n);
  t.same(await c.simpleReply(), { error: C.NBD_EPERM, handle: 4n });
  c.request(42, 0, 0, 0, 5n);
  t.same(await c.simpleReply(), { error: C.NBD_EINVAL, handle: 5n }, 'an unknown command');
  c.request(C.NBD_CMD_READ, 0, 512, C.NBD_CMD_FLAG_REQ_ONE, 6n);
  t.same(await c.simpleReply(), { error: C.NBD_EINVAL, handle: 6n }, 'a flag the command does not take');
  c.request(C.NBD_CMD_BLOCK_STATUS, 0, 512, 0, 7n);
  t.same(await c.simpleReply(), { error: C.NBD_EINVAL, handle: 7n }, 'block status without a metadata context');
  c.request(C.NBD_CMD_FLUSH, 0, 0, 0, 8n);
  t.same(await c.simpleReply(), { error: 0, handle: 8n }, 'the connection still serves');

  const killed = await attached(s.socketPath, 'rw');
  const h = Buffer.alloc(28);
  h.writeUInt32BE(C.NBD_REQUEST_MAGIC, 0);
  h.writeUInt16BE(C.NBD_CMD_WRITE, 6);
  h.writeUInt32BE(1 * MiB, 24);
  killed.write(Buffer.concat([h, Buffer.alloc(MiB / 2, 0x77)]));
  killed.close();
  const garbage = await attached(s.socketPath, 'ro');
  garbage.write(Buffer.alloc(28, 0x55));
  t.ok(await garbage.closes(), 'a bad request magic closes');
  c.request(C.NBD_CMD_READ, 0, 16, 0, 9n);
  t.same(await c.simpleReply(), { error: 0, handle: 9n });
  t.ok((await c.read(16)).equals(Buffer.alloc(16, 0xab)));
  t.ok(s.rw.data.subarray(0, MiB).equals(Buffer.alloc(MiB)), 'the half-sent write was never applied');
  c.close();
});

t.test('past the end of the export a trim is EINVAL, like a read; writes and write zeroes are ENOSPC', async (t) => {
  const s = await serve(t);
  const c = await attached(s.socketPath, 'rw');
  c.request(C.NBD_CMD_TRIM, 4 * MiB - 4096, 8192, 0, 1n);
  t.same(await c.simpleReply(), { error: C.NBD_EINVAL, handle: 1n }, 'trim');
  c.request(C.NBD_CMD_WRITE, 4 * MiB - 4096, 8192, 0, 2n, Buffer.alloc(8192, 1));
  t.same(await c.simpleReply(), { error: C.NBD_ENOSPC, handle: 2n }, 'write');
  c.request(C.NBD_CMD_WRITE_ZEROES, 4 * MiB - 4096, 8192, 0, 3n);
  t.same(await c.simpleReply(), { error: C.NBD_ENOSPC, handle: 3n }, 'write zeroes');
  c.close();
});

t.test('structured reads send holes as holes, and block status reports base:allocation', async (t) => {
  const s = await serve(t);
  const c = await RawClient.open(s.socketPath);
  await c.greet();
  c.option(C.NBD_OPT_STRUCTURED_REPLY);
  t.match(await c.reply(), { type: C.NBD_REP_ACK });
  const q = Buffer.from(C.BASE_ALLOCATION);
  const meta = Buffer.alloc(4 + 2 + 4 + 4 + q.length);
  meta.writeUInt32BE(2, 0);
  meta.write('ro', 4);
  meta.writeUInt32BE(1, 6);
  meta.writeUInt32BE(q.length, 10);
  q.copy(meta, 14);
  c.option(C.NBD_OPT_SET_META_CONTEXT, meta);
  const ctx = await c.reply();
  t.equal(ctx.type, C.NBD_REP_META_CONTEXT);
  t.equal(ctx.data.subarray(4).toString(), C.BASE_ALLOCATION);
  t.match(await c.reply(), { type: C.NBD_REP_ACK });
  await c.go('ro');
  c.request(C.NBD_CMD_READ, 0, 128 * KiB, 0, 1n);
  const first = await c.read(20);
  t.equal(first.readUInt16BE(6), C.NBD_REPLY_TYPE_OFFSET_DATA);
  t.equal(first.readUInt32BE(16), 8 + 64 * KiB);
  await c.read(8 + 64 * KiB);
  const second = await c.read(20);
  t.equal(second.readUInt16BE(6), C.NBD_REPLY_TYPE_OFFSET_HOLE);
  t.equal(second.readUInt16BE(4), C.NBD_REPLY_FLAG_DONE);
  const hole = await c.read(12);
  t.same([Number(hole.readBigUInt64BE(0)), hole.readUInt32BE(8)], [64 * KiB, 64 * KiB]);
  c.request(C.NBD_CMD_BLOCK_STATUS, 0, 1 * MiB, 0, 2n);
  const bs = await c.read(20);
  t.equal(bs.readUInt16BE(6), C.NBD_REPLY_TYPE_BLOCK_STATUS);
  const body = await c.read(bs.readUInt32BE(16));
  t.same([body.readUInt32BE(4), body.readUInt32BE(8), body.readUInt32BE(12), body.readUInt32BE(16)],
    [64 * KiB, 0, 1 * MiB - 64 * KiB, C.NBD_STATE_HOLE | C.NBD_STATE_ZERO]);
  c.request(C.NBD_CMD_READ, 2 * MiB, 512, 0, 3n);
  const err = await c.read(20);
  t.equal(err.readUInt16BE(6), C.NBD_REPLY_TYPE_ERROR, 'errors of structured reads are error chunks');
  t.equal((await c.read(err.readUInt32BE(16))).readUInt32BE(0), C.NBD_EINVAL);
  c.close();
});

t.test('real clients: qemu-io pattern writes, FUA, flush, trim and write zeroes through a writable export', { skip: spawnSync('qemu-io', ['--version']).status !== 0 && 'qemu-io is not installed' }, async (t) => {
  const s = await serve(t);
  const io = (...cmds: string[]) => tool('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), s.uri('rw')]);
  t.equal((await io('write -P 0x5a 0 1M', 'write -f -P 0x6b 1M 64k', 'flush')).status, 0);
  t.ok(s.rw.data.subarray(0, MiB).equals(Buffer.alloc(MiB, 0x5a)));
  t.ok(s.rw.fuaWrites >= 1, 'write -f arrived with FUA');
  t.ok(s.rw.flushes >= 1, 'flush arrived');
  const check = await io('read -P 0x5a 0 1M', 'read -P 0x6b 1M 64k');
  t.equal(check.status, 0);
  t.notMatch(check.out, /Pattern verification failed/);
  t.equal((await io('discard 0 256k', 'write -z -u 256k 256k', 'write -z 512k 512k')).status, 0);
  const map = (await tool('nbdinfo', ['--map', s.uri('rw')])).out;
  t.match(map, /^\s*0\s+524288\s+3\s+hole,zero/m, 'trimmed and unmap-zeroed ranges are holes again');
  t.match(map, /^\s*524288\s+589824\s+0\s+data/m, 'zeroes written with NO_HOLE stay allocated');
  t.equal((await io('read -P 0 0 1M', 'read -P 0x6b 1M 64k')).status, 0);
});

t.test('several clients at once copy the same export', async (t) => {
  const s = await serve(t);
  await s.rw.write(3 * MiB, Buffer.alloc(MiB, 0x3c), false);
  const dir = t.testdir();
  const runs = await Promise.all([1, 2, 3].map((i) => tool('nbdcopy', [s.uri('rw'), join(dir, `c${i}.raw`)])));
  t.same(runs.map((r) => r.status), [0, 0, 0], runs.map((r) => r.out).join(''));
  const { readFileSync } = await import('node:fs');
  for (const i of [1, 2, 3]) t.ok(readFileSync(join(dir, `c${i}.raw`)).equals(s.rw.data), `copy ${i} is exact`);
});
