/**
 * Requests must be plain msgpack (messages.ts, checkPlainMsgpack): what msgpackr would otherwise
 * build from a client's bytes (record readers compiled per structure, sets, regexps, bigints,
 * cycles, recursion per nesting level) is refused before msgpackr sees the frame.
 */
import { Packr } from 'msgpackr';
import t from 'tap';
import {
  checkPlainMsgpack, decodeMessage, decodeRequestPayload, encodeMessage, MAX_REQUEST_DEPTH, MAX_REQUEST_VALUES,
} from '../../src/daemon/protocol/messages';

const refused = { name: 'BlocksnapError', code: 'ProtocolError', message: /^undecodable frame: / };

t.test('requests as the protocol encoder writes them pass and decode as before', async (t) => {
  const requests = [
    { id: 1, method: 'hello', params: { protocol: 1, client: 'x' } },
    { id: 'abc', method: 'snapshot.tag', params: { snapshot: 's', tags: { a: 'b', 'k:1': '' } } },
    { id: 2, method: 'stream.data', params: { stream: 's', data: Buffer.alloc(256 * 1024, 7) } },
    { id: 3, method: 'policy.create', params: { name: 'p', hours: Array.from({ length: 24 }, (_, i) => i), keepLast: 2 ** 40, x: -1.5, n: null } },
    // msgpackr writes undefined as fixext 1 of type 0: the one extension allowed, read as absent.
    { id: 4, method: 'group.rollback', params: { group: 'g', wait: undefined } },
  ];
  for (const r of requests) {
    const bytes = encodeMessage(r);
    t.doesNotThrow(() => checkPlainMsgpack(bytes), `${r.method} passes`);
    t.same(decodeRequestPayload(bytes), decodeMessage(bytes), `${r.method} decodes as before`);
  }
});

t.test('msgpackr records are refused', async (t) => {
  const records = new Packr({ useRecords: true });
  t.throws(() => decodeRequestPayload(records.pack({ id: 1, method: 'disk.list', params: {} })), { ...refused, message: /extension \(type 114\)/ });
});

t.test('every extension type msgpackr decodes by default is refused', async (t) => {
  const rich = new Packr({ useRecords: false, structuredClone: true, moreTypes: true });
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const values: Array<[string, unknown]> = [
    ['a timestamp', new Date(0)], ['a set', new Set(['x'])], ['a regexp', /a+/], ['an error', new TypeError('x')],
    ['a typed array', new Uint16Array(4)], ['a bigint', 2n ** 100n], ['a cycle', cyclic],
  ];
  for (const [what, value] of values) {
    t.throws(() => decodeRequestPayload(rich.pack({ id: 1, method: 'disk.show', params: { disk: value } })), { ...refused, message: /msgpack extension/ }, what);
  }
  for (const bytes of [[0xc7, 0x01, 0x05, 0x00], [0xc8, 0x00, 0x01, 0x05, 0x00], [0xc9, 0, 0, 0, 1, 0x05, 0x00], [0xd5, 0x05, 0, 0], [0xd8, 0x05, ...Array(16).fill(0)]]) {
    t.throws(() => checkPlainMsgpack(Buffer.from(bytes)), { ...refused, message: /extension \(type 5\) at byte 0/ }, `0x${bytes[0]!.toString(16)}`);
  }
});

t.test('nesting deeper than the limit is refused without recursion', async (t) => {
  const nested = (depth: number): Buffer => Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])]);
  t.doesNotThrow(() => checkPlainMsgpack(nested(MAX_REQUEST_DEPTH)), 'the limit itself passes');
  t.throws(() => checkPlainMsgpack(nested(MAX_REQUEST_DEPTH + 1)), { ...refused, message: /nesting deeper than 32 levels/ });
  // A million levels is far past any stack msgpackr could recurse through.
  t.throws(() => checkPlainMsgpack(nested(1_000_000)), { ...refused, message: /nesting deeper/ });
});

t.test('more values than the limit are refused, map keys counting', async (t) => {
  const array = (n: number): Buffer => {
    const head = Buffer.alloc(5);
    head[0] = 0xdd;
    head.writeUInt32BE(n, 1);
    return Buffer.concat([head, Buffer.alloc(n, 0x01)]);
  };
  t.doesNotThrow(() => checkPlainMsgpack(array(MAX_REQUEST_VALUES - 1)), 'the array and its items make the limit');
  t.throws(() => checkPlainMsgpack(array(MAX_REQUEST_VALUES)), { ...refused, message: /more than 16384 values/ });
  const keys = Object.fromEntries(Array.from({ length: MAX_REQUEST_VALUES / 2 }, (_, i) => [`k${i}`, 1]));
  t.throws(() => checkPlainMsgpack(encodeMessage(keys)), { ...refused, message: /more than 16384 values/ }, 'a map of 8192 entries is 16385 values');
});

t.test('a count beyond the bytes left is refused before anything is allocated for it', async (t) => {
  for (const bytes of [[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0], [0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0], [0xdb, 0xff, 0xff, 0xff, 0xff, 0x41], [0xc6, 0, 0, 0, 9, 1]]) {
    t.throws(() => checkPlainMsgpack(Buffer.from(bytes)), { ...refused, message: /ends inside a value/ }, `0x${bytes[0]!.toString(16)}`);
  }
});

t.test('the never-used byte, trailing bytes and a cut-off value are refused', async (t) => {
  t.throws(() => checkPlainMsgpack(Buffer.from([0x91, 0xc1])), { ...refused, message: /0xc1 at byte 1/ });
  t.throws(() => checkPlainMsgpack(Buffer.from([0x80, 0x80])), { ...refused, message: /1 trailing bytes after the value/ });
  t.throws(() => checkPlainMsgpack(Buffer.from([0x82, 0xa1, 0x61])), { ...refused, message: /ends inside a value/ });
  t.throws(() => checkPlainMsgpack(Buffer.from([0xcb, 0, 0])), { ...refused, message: /ends inside a value/ });
});
