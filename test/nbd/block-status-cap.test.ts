/**
 * BLOCK_STATUS asks the backend for no more extents than the reply carries (one with REQ_ONE,
 * 1024 otherwise), so a request over a fragmented range costs what it returns; the descriptors
 * are the range's first extents, in order.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { MemoryBackend } from './fixtures/memory-backend';
import { RawClient } from './fixtures/raw-client';
import { chunk, startServer } from './fixtures/serve';

const KiB = 1024;
const GRANULE = 64 * KiB;
const GRANULES = 2100;
const HOLE = C.NBD_STATE_HOLE | C.NBD_STATE_ZERO;

/** Every other granule written: GRANULES extents, alternating data and hole. */
async function fragmented(t: Test) {
  const backend = new MemoryBackend(GRANULES * GRANULE);
  for (let g = 0; g < GRANULES; g += 2) await backend.write(g * GRANULE, Buffer.alloc(GRANULE, 1), false);
  const asked: number[] = [];
  const extents = backend.extents.bind(backend);
  backend.extents = (offset, length, max) => {
    asked.push(max);
    return extents(offset, length, max);
  };
  const { socketPath } = await startServer(t, { frag: backend });
  return { socketPath, asked };
}

/** A client with structured replies and base:allocation selected on `name`. */
async function withAllocation(socketPath: string, name: string): Promise<RawClient> {
  const c = await RawClient.open(socketPath);
  await c.greet();
  c.option(C.NBD_OPT_STRUCTURED_REPLY);
  await c.reply();
  const q = Buffer.from(C.BASE_ALLOCATION);
  const n = Buffer.from(name);
  const meta = Buffer.alloc(4 + n.length + 4 + 4 + q.length);
  meta.writeUInt32BE(n.length, 0);
  n.copy(meta, 4);
  meta.writeUInt32BE(1, 4 + n.length);
  meta.writeUInt32BE(q.length, 8 + n.length);
  q.copy(meta, 12 + n.length);
  c.option(C.NBD_OPT_SET_META_CONTEXT, meta);
  if ((await c.reply()).type !== C.NBD_REP_META_CONTEXT || (await c.reply()).type !== C.NBD_REP_ACK) throw new Error('no base:allocation');
  const replies = await c.go(name);
  if (replies[replies.length - 1]!.type !== C.NBD_REP_ACK) throw new Error('GO failed');
  return c;
}

/** The descriptors of one BLOCK_STATUS reply as [length, flags]. */
async function blockStatus(c: RawClient, length: number, flags: number, handle: bigint): Promise<number[][]> {
  c.request(C.NBD_CMD_BLOCK_STATUS, 0, length, flags, handle);
  const r = await chunk(c);
  if (r.type !== C.NBD_REPLY_TYPE_BLOCK_STATUS) throw new Error(`reply type ${r.type}`);
  const out: number[][] = [];
  for (let at = 4; at < r.data.length; at += 8) out.push([r.data.readUInt32BE(at), r.data.readUInt32BE(at + 4)]);
  return out;
}

t.test('REQ_ONE over a fragmented range: the first extent, and one asked of the backend', async (t) => {
  const { socketPath, asked } = await fragmented(t);
  const c = await withAllocation(socketPath, 'frag');
  t.same(await blockStatus(c, GRANULES * GRANULE, C.NBD_CMD_FLAG_REQ_ONE, 1n), [[GRANULE, 0]]);
  t.same(asked, [1]);
  c.close();
});

t.test('without REQ_ONE: the first 1024 extents, and no more asked of the backend', async (t) => {
  const { socketPath, asked } = await fragmented(t);
  const c = await withAllocation(socketPath, 'frag');
  const list = await blockStatus(c, GRANULES * GRANULE, 0, 1n);
  t.same(list, Array.from({ length: 1024 }, (_, i) => [GRANULE, i % 2 === 0 ? 0 : HOLE]));
  t.same(asked, [1024]);
  c.close();
});
