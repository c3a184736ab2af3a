/** Writes that go on past short counts, until whole or until the call itself fails. */
import t from 'tap';
import { writeFully, writevFully } from '../src/write-fully';

/** A file that takes at most `max` bytes per call, and fails with `errno` once `room` bytes are written. */
function fakeFile(max: number, room = Infinity, errno = 'ENOSPC') {
  const bytes = Buffer.alloc(64);
  let written = 0;
  const take = (chunk: Buffer, position: number): number => {
    if (written >= room) throw Object.assign(new Error(`${errno}: no space left on device, write`), { code: errno });
    const n = Math.min(chunk.length, max, room - written);
    chunk.copy(bytes, position, 0, n);
    written += n;
    return n;
  };
  return {
    bytes,
    calls: 0,
    async writev(buffers: Buffer[], position: number) {
      this.calls++;
      return { bytesWritten: take(Buffer.concat(buffers), position) };
    },
    async write(data: Buffer, position: number) {
      this.calls++;
      return take(data, position);
    },
  };
}

t.test('short counts are written on, each piece at its place', async (t) => {
  const f = fakeFile(3);
  await writevFully(f, [Buffer.from('abcd'), Buffer.alloc(0), Buffer.from('efghij')], 5, 'f');
  t.equal(f.bytes.subarray(5, 15).toString(), 'abcdefghij');
  t.equal(f.calls, 4, 'four calls of at most 3 bytes');
  const g = fakeFile(4);
  await writeFully(g, Buffer.from('0123456789'), 2, 'g');
  t.equal(g.bytes.subarray(2, 12).toString(), '0123456789');
});

t.test('a full filesystem is the errno of the call after the short one, with the file named', async (t) => {
  const f = fakeFile(1024, 6);
  await t.rejects(writevFully(f, [Buffer.from('abcdefghij')], 0, '/images/vm.stream'),
    { code: 'ENOSPC', message: "ENOSPC: no space left on device, write '/images/vm.stream'" });
  await t.rejects(writeFully(fakeFile(1024, 6), Buffer.from('abcdefghij'), 0, '/data/blocks/tmp/x'), { code: 'ENOSPC', message: /write '\/data\/blocks\/tmp\/x'$/ });
});

t.test('a write that makes no progress and gives no error is an IOError, not a loop', async (t) => {
  const stuck = { async writev() { return { bytesWritten: 0 }; }, async write() { return 0; } };
  await t.rejects(writevFully(stuck, [Buffer.from('x')], 0, 'f'), { code: 'IOError', message: 'a write to f wrote nothing and gave no error' });
  await t.rejects(writeFully(stuck, Buffer.from('x'), 0, 'f'), { code: 'IOError' });
});
