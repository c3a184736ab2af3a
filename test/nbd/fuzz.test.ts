/**
 * A seeded stream of NBD sessions, most of them malformed somewhere (client flags, option
 * headers and lengths, export names, request magic, commands, flags, offsets, lengths, write
 * payloads cut short, connections dropped mid-message), against the real server with eight at a
 * time. What must hold: each bad session ends only itself. A bystander attached before the first
 * one keeps reading the right bytes throughout, the read-only export never changes, and once
 * every fuzzing client has gone the server holds no connection but the bystander's.
 * A failure names its seed; BLOCKSNAP_NBD_FUZZ_SEED=N replays it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { NbdServer } from '../../src/nbd/server';
import * as C from '../../src/nbd/constants';
import { Random, seedFrom } from '../helpers/random';
import { MemoryBackend, table } from './fixtures/memory-backend';
import { RawClient } from './fixtures/raw-client';

const KiB = 1024;
const MiB = 1024 * KiB;
const SESSIONS = 400;
const AT_ONCE = 8;
const silent = { debug() {}, info() {}, warn() {} };

const OPTION_MAGIC = 0x49484156454f5054n;
const REQUEST_MAGIC = 0x25609513;
const OPTIONS = [C.NBD_OPT_EXPORT_NAME, C.NBD_OPT_ABORT, C.NBD_OPT_LIST, C.NBD_OPT_STARTTLS, C.NBD_OPT_INFO, C.NBD_OPT_GO,
  C.NBD_OPT_STRUCTURED_REPLY, C.NBD_OPT_LIST_META_CONTEXT, C.NBD_OPT_SET_META_CONTEXT];
const COMMANDS = [C.NBD_CMD_READ, C.NBD_CMD_WRITE, C.NBD_CMD_DISC, C.NBD_CMD_FLUSH, C.NBD_CMD_TRIM, C.NBD_CMD_CACHE,
  C.NBD_CMD_WRITE_ZEROES, C.NBD_CMD_BLOCK_STATUS];

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** Mostly plausible, sometimes absurd: lengths and offsets are where parsers break. */
function size(r: Random, plausible: number): number {
  return r.pick([0, 1, r.int(0, plausible), plausible, plausible + 1, r.int(0, 0xffffffff), 0xffffffff]);
}

function exportName(r: Random): Buffer {
  return r.pick([Buffer.from('ro'), Buffer.from('rw'), Buffer.from(''), r.bytes(r.int(0, 40)), Buffer.alloc(5000, 0x61)]);
}

/** The data of an option that names an export (INFO, GO): name length, name, info requests. */
function nameData(r: Random): Buffer {
  const name = exportName(r);
  const infos = r.int(0, 3);
  const body = Buffer.concat([u32(r.chance(0.9) ? name.length : size(r, name.length)), name, Buffer.alloc(2)]);
  body.writeUInt16BE(r.chance(0.9) ? infos : r.int(0, 0xffff), 4 + name.length);
  const requests = Buffer.alloc(2 * infos);
  for (let i = 0; i < infos; i++) requests.writeUInt16BE(r.int(0, 4), 2 * i);
  return Buffer.concat([body, requests]);
}

function metaData(r: Random): Buffer {
  const name = exportName(r);
  const queries = r.pick([[], ['base:allocation'], ['base:'], ['qemu:dirty-bitmap:x'], [r.bytes(r.int(0, 20)).toString('latin1')]]);
  const parts = [u32(name.length), name, u32(r.chance(0.9) ? queries.length : r.int(0, 0xffffffff))];
  for (const q of queries) {
    const b = Buffer.from(q, 'latin1');
    parts.push(u32(r.chance(0.9) ? b.length : size(r, b.length)), b);
  }
  return Buffer.concat(parts);
}

function option(r: Random): Buffer {
  const code = r.chance(0.85) ? r.pick(OPTIONS) : r.int(0, 0xffffffff);
  let data: Buffer;
  if (code === C.NBD_OPT_INFO || code === C.NBD_OPT_GO) data = nameData(r);
  else if (code === C.NBD_OPT_LIST_META_CONTEXT || code === C.NBD_OPT_SET_META_CONTEXT) data = metaData(r);
  else if (code === C.NBD_OPT_EXPORT_NAME) data = exportName(r);
  else data = r.chance(0.7) ? Buffer.alloc(0) : r.bytes(r.int(1, 64));
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(r.chance(0.95) ? OPTION_MAGIC : BigInt(r.int(0, 0xffffffff)), 0);
  h.writeUInt32BE(code >>> 0, 8);
  h.writeUInt32BE(r.chance(0.85) ? data.length : size(r, data.length) >>> 0, 12);
  return Buffer.concat([h, data]);
}

function request(r: Random, exportSize: number): Buffer {
  const type = r.chance(0.9) ? r.pick(COMMANDS) : r.int(0, 0xffff);
  const length = r.chance(0.7) ? r.int(0, 64 * KiB) : size(r, exportSize);
  const h = Buffer.alloc(28);
  h.writeUInt32BE(r.chance(0.97) ? REQUEST_MAGIC : r.int(0, 0xffffffff), 0);
  h.writeUInt16BE(r.chance(0.7) ? 0 : r.int(0, 0xffff), 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(r.int(0, 0xffffffff)), 8);
  h.writeBigUInt64BE(r.chance(0.8) ? BigInt(r.int(0, exportSize)) : BigInt(r.int(0, 0xffffffff)) * BigInt(r.int(1, 0xffffffff)), 16);
  h.writeUInt32BE(length >>> 0, 24);
  if (type !== C.NBD_CMD_WRITE) return h;
  // A write's payload: whole, cut short, or absent (the connection then ends mid-message).
  const sent = r.pick([length, r.int(0, length), 0]);
  return Buffer.concat([h, Buffer.alloc(Math.min(sent, 64 * KiB), r.int(0, 255))]);
}

/** One session's bytes after the greeting: flags, options, maybe a GO and requests, maybe junk. */
function session(r: Random): Buffer {
  const parts: Buffer[] = [u32(r.chance(0.9) ? C.NBD_FLAG_C_FIXED_NEWSTYLE | C.NBD_FLAG_C_NO_ZEROES : r.int(0, 0xffffffff))];
  for (let i = r.int(0, 4); i > 0; i--) parts.push(option(r));
  if (r.chance(0.6)) {
    const name = Buffer.from(r.chance(0.7) ? 'rw' : 'ro');
    const go = Buffer.concat([u32(name.length), name, Buffer.alloc(2)]);
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(OPTION_MAGIC, 0);
    h.writeUInt32BE(C.NBD_OPT_GO, 8);
    h.writeUInt32BE(go.length, 12);
    parts.push(h, go);
    for (let i = r.int(0, 12); i > 0; i--) parts.push(request(r, 4 * MiB));
  }
  if (r.chance(0.2)) parts.push(r.bytes(r.int(1, 256)));
  const all = Buffer.concat(parts);
  // Sometimes the client vanishes part-way through what it meant to send.
  return r.chance(0.25) ? all.subarray(0, r.int(0, all.length)) : all;
}

t.test('malformed NBD sessions end only themselves: a bystander is served throughout and no connection is left', async (t) => {
  const seed = seedFrom('BLOCKSNAP_NBD_FUZZ_SEED');
  t.comment(`seed ${seed}`);
  const r = new Random(seed);
  // A Unix socket path must stay under 108 bytes: not in tap's deep fixture directory.
  const dir = mkdtempSync(join(tmpdir(), 'bsnbdf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'nbd.sock');
  const ro = new MemoryBackend(1 * MiB, false);
  const content = r.bytes(256 * KiB);
  await ro.write(0, content, false);
  const rw = new MemoryBackend(4 * MiB, true);
  const server = new NbdServer(table({ ro, rw }), { socketPath, socketMode: 0o660 }, silent);
  await server.listen();
  t.teardown(() => server.close());

  const bystander = await RawClient.open(socketPath);
  await bystander.greet();
  const go = await bystander.go('ro');
  t.equal(go[go.length - 1]!.type, C.NBD_REP_ACK, 'the bystander attaches');
  let handle = 1n;
  const check = async (): Promise<void> => {
    const offset = r.int(0, content.length - 4 * KiB);
    const length = r.int(1, 4 * KiB);
    bystander.request(C.NBD_CMD_READ, offset, length, 0, ++handle);
    const reply = await bystander.simpleReply();
    if (reply.error !== 0 || reply.handle !== handle) throw new Error(`seed ${seed}: bystander read failed: ${JSON.stringify({ ...reply, handle: String(reply.handle) })}`);
    if (!(await bystander.read(length)).equals(content.subarray(offset, offset + length))) throw new Error(`seed ${seed}: bystander read wrong bytes at ${offset}`);
  };

  let closedByServer = 0;
  const one = async (bytes: Buffer, linger: boolean): Promise<void> => {
    const c = await RawClient.open(socketPath);
    try {
      await c.read(18);
      c.write(bytes);
      if (linger && (await c.closes(300))) closedByServer++;
    } finally {
      c.close();
    }
  };
  for (let done = 0; done < SESSIONS; done += AT_ONCE) {
    const batch = Array.from({ length: AT_ONCE }, () => one(session(r), r.chance(0.5)));
    await Promise.all(batch);
    await check();
  }
  t.ok(closedByServer > 0, `the server closed ${closedByServer} sessions it could not go on with`);
  t.ok(rw.data.some((b) => b !== 0), 'fuzzed sessions got as far as writing to the read-write export');
  t.ok(ro.data.subarray(0, content.length).equals(content) && ro.data.subarray(content.length).equals(Buffer.alloc(ro.size - content.length)),
    'the read-only export is unchanged');

  const until = Date.now() + 10_000;
  while (server.connectionCount > 1 && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
  t.equal(server.connectionCount, 1, 'only the bystander is still connected');
  await check();
  bystander.close();
});
