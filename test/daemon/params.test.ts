import t from 'tap';
import { absolutePath, boolean, integer, oneOf, optional, string, text, validateParams } from '../../src/daemon/params';
import { decodeMessage, encodeMessage, parseRequest } from '../../src/daemon/protocol/messages';

const shape = { path: absolutePath, name: optional(string), format: optional(oneOf('raw', 'qcow2')), wait: optional(boolean) };

t.test('valid params come back with only the given keys', async (t) => {
  t.same(validateParams(shape, { path: '/a/b.img' }), { path: '/a/b.img' });
  t.same(validateParams(shape, { path: '/x', name: 'n', format: 'raw', wait: true }), { path: '/x', name: 'n', format: 'raw', wait: true });
});

t.test('nil counts as absent', async (t) => {
  t.same(validateParams(shape, { path: '/x', name: null }), { path: '/x' });
});

t.test('every complaint reads params.<name> must be <expectation>', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{}, /^params\.path must be an absolute path$/],
    [{ path: 'rel/x' }, /^params\.path must be an absolute path, got "rel\/x" \(a string\)$/],
    [{ path: '/x\0y' }, /^params\.path must be an absolute path/],
    [{ path: `/${'x'.repeat(4096)}` }, /^params\.path must be at most 4096 bytes long \(PATH_MAX\), got an absolute path of 4097 bytes: the path is too long$/],
    // PATH_MAX counts bytes: 2,049 emoji are 4,098 UTF-16 units, 2,049 code points and 8,197 bytes.
    [{ path: `/${'\u{1F600}'.repeat(2049)}` }, /^params\.path must be at most 4096 bytes long \(PATH_MAX\), got an absolute path of 8197 bytes: the path is too long$/],
    [{ path: `/${'\u00e9'.repeat(3000)}` }, /^params\.path must be at most 4096 bytes long \(PATH_MAX\), got an absolute path of 6001 bytes: the path is too long$/],
    [{ path: '/x', name: 3 }, /^params\.name must be a string of 1 to 4096 characters, got 3 \(an integer\)$/],
    [{ path: '/x', name: '' }, /^params\.name must be a string of 1 to 4096 characters, got an empty string$/],
    [{ path: '/x', name: 'x'.repeat(5000) }, /^params\.name must be a string of 1 to 4096 characters, got a string of 5000 characters$/],
    [{ path: '/x', format: 'vmdk' }, /^params\.format must be one of "raw", "qcow2", got "vmdk" \(a string\)$/],
    [{ path: '/x', format: 'a\u009b2J\u001b' }, /^params\.format must be one of "raw", "qcow2", got "a\\u009b2J\\u001b" \(a string\)$/],
    [{ path: '/x', wait: 'yes' }, /^params\.wait must be a boolean, got "yes" \(a string\)$/],
    [{ path: '/x', wait: 1 }, /^params\.wait must be a boolean, got 1 \(an integer\)$/],
    [{ path: '/x', name: ['a'] }, /^params\.name must be a string.*got an array$/],
    [{ path: '/x', name: { a: 1 } }, /^params\.name must be a string.*got a map$/],
    [{ path: '/x', name: Buffer.from('a') }, /^params\.name must be a string.*got binary data$/],
    [{ path: '/x', colour: 'red' }, /^params\.colour must be absent \(known: path, name, format, wait\)$/],
  ];
  for (const [params, message] of cases) {
    t.throws(() => validateParams(shape, params), { code: 'InvalidArgument', message }, JSON.stringify(params));
  }
});

t.test('methods without params say so', async (t) => {
  t.throws(() => validateParams({}, { x: 1 }), { message: 'params.x must be absent (this method takes no params)' });
});

t.test('integers and free text', async (t) => {
  const s = { n: integer(1, 10), d: optional(text) };
  t.same(validateParams(s, { n: 10, d: '' }), { n: 10, d: '' });
  t.throws(() => validateParams(s, { n: 11 }), { message: 'params.n must be an integer from 1 to 10, got 11 (an integer)' });
  t.throws(() => validateParams(s, { n: 1.5 }), { message: 'params.n must be an integer from 1 to 10, got 1.5 (a float)' });
});

t.test('inherited properties are never read as params', async (t) => {
  const params = Object.create({ path: '/inherited' }) as Record<string, unknown>;
  t.throws(() => validateParams(shape, params), { message: /params\.path must be/ });
});

t.test('request envelopes', async (t) => {
  const roundTrip = (v: unknown): unknown => decodeMessage(encodeMessage(v as object));
  t.same(parseRequest(roundTrip({ id: 1, method: 'x' })), { id: 1, method: 'x', params: {} });
  t.same(parseRequest(roundTrip({ id: 'a', method: 'x', params: { k: 1 } })), { id: 'a', method: 'x', params: { k: 1 } });
  t.throws(() => parseRequest(roundTrip([1])), { code: 'ProtocolError', message: /must be a msgpack map, got an array/ });
  t.throws(() => parseRequest({ id: 1.5, method: 'x' }), { code: 'ProtocolError', message: /request\.id/ });
  t.throws(() => parseRequest({ id: '', method: 'x' }), { code: 'ProtocolError' });
  t.throws(() => parseRequest({ id: 'x'.repeat(129), method: 'x' }), { code: 'ProtocolError' });
  t.throws(() => parseRequest({ id: 1, method: '' }), { code: 'ProtocolError', details: { id: 1 } });
  t.throws(() => parseRequest({ id: 1, method: 'x', params: 'p' }), { code: 'InvalidArgument', message: 'params must be a map, got a string' });
  t.throws(() => decodeMessage(Buffer.from([0x92, 0x01])), { code: 'ProtocolError', message: /undecodable/ });
  t.throws(() => decodeMessage(Buffer.from([0x80, 0x80])), { code: 'ProtocolError', message: /undecodable/ });
});
