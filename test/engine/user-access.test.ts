/**
 * POSIX ACLs decided as the kernel's posix_acl_permission does, on ACL values built as the
 * kernel stores them (system.posix_acl_access).
 */
import t from 'tap';
import { aclAllows, parseAcl } from '../../src/engine/user-access';

type Entry = [tag: number, perm: number, id: number];
const UNDEFINED_ID = 0xffffffff;

function acl(...entries: Entry[]): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id, 8 + 8 * i);
  });
  return b;
}

const R = 4, W = 2;
// user::rw- user:500:rw- group::r-- group:600:rw- mask::rw- other::---, file 0:0
const FILE = parseAcl(acl([1, 6, UNDEFINED_ID], [2, 6, 500], [4, 4, UNDEFINED_ID], [8, 6, 600], [0x10, 6, UNDEFINED_ID], [0x20, 0, UNDEFINED_ID]), '/f');
const st = { uid: 0, gid: 0 };
const groups = (...gids: number[]) => (g: number): boolean => gids.includes(g);

t.test('a named user entry grants within the mask', async (t) => {
  t.ok(aclAllows(FILE, st, 500, groups(500), R | W));
});

t.test('the mask limits a named user entry', async (t) => {
  const masked = parseAcl(acl([1, 6, UNDEFINED_ID], [2, 6, 500], [4, 4, UNDEFINED_ID], [0x10, 4, UNDEFINED_ID], [0x20, 0, UNDEFINED_ID]), '/f');
  t.ok(aclAllows(masked, st, 500, groups(500), R));
  t.notOk(aclAllows(masked, st, 500, groups(500), W));
});

t.test('any matching group entry that holds the rights grants them', async (t) => {
  t.ok(aclAllows(FILE, st, 501, groups(0, 600), R | W), 'the named group holds rw though the owning group holds r');
});

t.test('a user in a matching group entry is not given the others\' entry', async (t) => {
  const openOther = parseAcl(acl([1, 6, UNDEFINED_ID], [4, 0, UNDEFINED_ID], [0x10, 7, UNDEFINED_ID], [0x20, 6, UNDEFINED_ID]), '/f');
  t.notOk(aclAllows(openOther, st, 501, groups(0), R), 'in the owning group, which holds nothing');
  t.ok(aclAllows(openOther, st, 502, groups(9), R), 'in no group entry: the others\' entry');
});

t.test('the owner\'s entry alone decides for the owner', async (t) => {
  const ownerNone = parseAcl(acl([1, 0, UNDEFINED_ID], [2, 6, 500], [4, 6, UNDEFINED_ID], [0x10, 6, UNDEFINED_ID], [0x20, 6, UNDEFINED_ID]), '/f');
  t.notOk(aclAllows(ownerNone, { uid: 500, gid: 0 }, 500, groups(0), R));
});

t.test('an ACL value of another version is refused, not guessed at', async (t) => {
  const v1 = acl([1, 6, UNDEFINED_ID]);
  v1.writeUInt32LE(1, 0);
  t.throws(() => parseAcl(v1, '/f'), { code: 'UnsupportedFormat' });
});
