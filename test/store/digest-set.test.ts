/**
 * DigestSet: a Buffer-backed set of SHA-256 digests (remote verify's record of blocks checked).
 */
import { createHash } from 'node:crypto';
import t from 'tap';
import { DigestSet } from '../../src/store/digest-set';
import { ZERO_DIGEST } from '../../src/store/format';

const digest = (i: number): Buffer => createHash('sha256').update(`block-${i}`).digest();

t.test('a digest is added once: the second add of it says it was there', async (t) => {
  const set = new DigestSet();
  t.equal(set.add(digest(1)), true);
  t.equal(set.add(digest(1)), false);
  t.equal(set.size, 1);
});

t.test('a digest is read at its offset in a packed map', async (t) => {
  const set = new DigestSet();
  const map = Buffer.concat([digest(1), digest(2)]);
  t.equal(set.add(map, 32), true);
  t.ok(set.has(digest(2)), 'the second digest of the map is in');
  t.notOk(set.has(digest(1)), 'the first is not');
});

t.test('every digest stays found across many growths, and no other one is', async (t) => {
  const set = new DigestSet();
  const n = 50_000;
  for (let i = 0; i < n; i++) set.add(digest(i));
  t.equal(set.size, n);
  let found = 0;
  for (let i = 0; i < n; i++) if (set.has(digest(i))) found++;
  t.equal(found, n, 'all added are found');
  let stray = 0;
  for (let i = n; i < n + 5_000; i++) if (set.has(digest(i))) stray++;
  t.equal(stray, 0, 'none not added is found');
});

t.test('digests that share their first bytes (one probe start) are told apart', async (t) => {
  const set = new DigestSet();
  const a = digest(1);
  const b = Buffer.from(a);
  b[31]! ^= 0xff;
  t.equal(set.add(a), true);
  t.equal(set.add(b), true);
  t.equal(set.size, 2);
});

t.test('the ZERO digest names a hole: adding it is refused', async (t) => {
  t.throws(() => new DigestSet().add(ZERO_DIGEST), { code: 'Internal' });
  t.equal(new DigestSet().has(ZERO_DIGEST), false);
});
