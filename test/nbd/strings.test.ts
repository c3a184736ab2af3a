import t from 'tap';
import { quoteName, wireString } from '../../src/nbd/strings';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

t.test('a string within the limit goes out whole', async (t) => {
  t.same(wireString('é'.repeat(2048)), Buffer.from('é'.repeat(2048)), '4096 bytes exactly');
});

t.test('a longer string is cut at a character boundary, never inside a character', async (t) => {
  // 1 + 3 × 1365 = 4096 bytes fit; one more '€' would straddle the limit.
  const text = `x${'€'.repeat(2000)}`;
  const out = wireString(text);
  t.equal(out.length, 4096);
  t.equal(strictUtf8.decode(out), `x${'€'.repeat(1365)}`);
  const shifted = wireString(`xy${'€'.repeat(2000)}`);
  t.equal(shifted.length, 4094, 'the character that would end at byte 4097 is left out');
  t.equal(strictUtf8.decode(shifted), `xy${'€'.repeat(1364)}`);
  t.equal(strictUtf8.decode(wireString('😀'.repeat(3000), 4097)), '😀'.repeat(1024), 'four-byte characters too');
});

t.test('a long name is quoted only in part, with its length', async (t) => {
  const q = quoteName('\0'.repeat(4096));
  t.ok(q.startsWith(`"${'\\u0000'.repeat(256)}"`));
  t.match(q, /\(4096 bytes\)$/);
  t.equal(quoteName('vm-one'), '"vm-one"');
});
