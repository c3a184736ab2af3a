import t from 'tap';
import { FrameDecoder, frame, FRAME_HEADER_BYTES } from '../../src/daemon/protocol/frame';

const payloads = [Buffer.from('a'), Buffer.alloc(300, 7), Buffer.from('hello world')];
const stream = Buffer.concat(payloads.map((p) => frame(p)));

t.test('frame prefixes the payload with its big-endian length', async (t) => {
  const f = frame(Buffer.from([1, 2, 3]));
  t.same([...f], [0, 0, 0, 3, 1, 2, 3]);
});

t.test('many frames in one chunk come out in order', async (t) => {
  const d = new FrameDecoder();
  t.same(d.push(stream).map((b) => b.toString('hex')), payloads.map((p) => p.toString('hex')));
  t.equal(d.pendingBytes, 0);
});

t.test('frames split at every byte boundary are reassembled', async (t) => {
  for (let cut = 1; cut < stream.length; cut += 7) {
    const d = new FrameDecoder();
    const out = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
    t.same(out.map((b) => b.toString('hex')), payloads.map((p) => p.toString('hex')), `cut at ${cut}`);
  }
});

t.test('a stream fed one byte at a time is reassembled', async (t) => {
  const d = new FrameDecoder();
  const out: Buffer[] = [];
  for (const byte of stream) out.push(...d.push(Buffer.from([byte])));
  t.same(out.map((b) => b.toString('hex')), payloads.map((p) => p.toString('hex')));
});

t.test('a header split across chunks waits for the rest', async (t) => {
  const d = new FrameDecoder();
  const f = frame(Buffer.from('xyz'));
  t.same(d.push(f.subarray(0, 2)), []);
  t.equal(d.pendingBytes, 2);
  t.same(d.push(f.subarray(2)).map(String), ['xyz']);
});

t.test('an oversized length is rejected from the header alone and the decoder stays failed', async (t) => {
  const d = new FrameDecoder(1024);
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(1025);
  t.throws(() => d.push(header), { name: 'BlocksnapError', code: 'FrameTooLarge' });
  t.throws(() => d.push(frame(Buffer.from('ok'))), { name: 'BlocksnapError', code: 'ProtocolError' });
});

t.test('a frame of exactly the limit is accepted', async (t) => {
  const d = new FrameDecoder(1024);
  t.equal(d.push(frame(Buffer.alloc(1024))).length, 1);
});

t.test('garbage that happens to parse as a huge length is FrameTooLarge', async (t) => {
  const d = new FrameDecoder();
  t.throws(() => d.push(Buffer.from('GET / HTTP/1.1\r\n')), { name: 'BlocksnapError', code: 'FrameTooLarge' });
});

t.test('an empty frame is returned as an empty payload (the codec rejects it)', async (t) => {
  const d = new FrameDecoder();
  t.same(d.push(Buffer.alloc(4)).map((b) => b.length), [0]);
});

t.test('the limit must be a sane integer', async (t) => {
  t.throws(() => new FrameDecoder(0));
  t.throws(() => new FrameDecoder(2 ** 32));
  t.throws(() => new FrameDecoder(1.5));
});

t.test('next takes one frame at a time and leaves the rest buffered', async (t) => {
  // The daemon takes a client's frames only while it may start their requests; the rest wait here.
  const d = new FrameDecoder();
  d.append(stream);
  t.same(d.next()?.toString('hex'), payloads[0]!.toString('hex'));
  t.equal(d.pendingBytes, stream.length - FRAME_HEADER_BYTES - payloads[0]!.length);
  t.same([d.next(), d.next()].map((b) => b?.toString('hex')), payloads.slice(1).map((p) => p.toString('hex')));
  t.equal(d.next(), undefined);
});

t.test('midFrame holds from the first byte of a frame to its last, header included', async (t) => {
  // The daemon times a frame from its first byte: a bare length prefix counts as a begun frame.
  const d = new FrameDecoder();
  const f = frame(Buffer.from('xyz'));
  t.notOk(d.midFrame, 'nothing buffered');
  d.append(f.subarray(0, 1));
  t.equal(d.next(), undefined);
  t.ok(d.midFrame, 'part of a header');
  d.append(f.subarray(1, 4));
  t.equal(d.next(), undefined);
  t.ok(d.midFrame, 'a header and no payload yet');
  d.append(f.subarray(4));
  t.same(d.next()?.toString(), 'xyz');
  t.notOk(d.midFrame, 'the frame was taken');
});
