/**
 * A client's groups come from /proc/PID/status of the pid SO_PEERCRED gave, and only when that
 * status still shows the effective uid and gid the client connected with.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { peerCredentials } from '../../src/daemon/peer-credentials';

function proc(t: Test, pid: number, status: string): string {
  const dir = t.testdir();
  mkdirSync(join(dir, String(pid)));
  writeFileSync(join(dir, String(pid), 'status'), status);
  return dir;
}

const STATUS = 'Name:\tblocksnap\nUid:\t1001\t1001\t1001\t1001\nGid:\t1002\t1002\t1002\t1002\nGroups:\t1002 27 44 \n';

t.test('the groups of a client still the user it connected as', async (t) => {
  const dir = proc(t, 77, STATUS);
  t.same(peerCredentials({ uid: 1001, gid: 1002, pid: 77, hungUp: false }, dir), { uid: 1001, gid: 1002, groups: [1002, 27, 44] });
});

t.test('a client with no supplementary groups has none', async (t) => {
  const dir = proc(t, 77, STATUS.replace('Groups:\t1002 27 44 ', 'Groups:\t'));
  t.same(peerCredentials({ uid: 1001, gid: 1002, pid: 77, hungUp: false }, dir)?.groups, []);
});

t.test('a status of another effective user gives no credentials', async (t) => {
  const dir = proc(t, 77, STATUS.replace('Uid:\t1001\t1001', 'Uid:\t1001\t0'));
  t.equal(peerCredentials({ uid: 1001, gid: 1002, pid: 77, hungUp: false }, dir), undefined);
});

t.test('a pid that is gone or was not reported gives no credentials', async (t) => {
  const dir = t.testdir();
  t.equal(peerCredentials({ uid: 1001, gid: 1002, pid: 77, hungUp: false }, dir), undefined, 'gone');
  t.equal(peerCredentials({ uid: 1001, gid: 1002, pid: 0, hungUp: false }, dir), undefined, 'not reported');
  t.equal(peerCredentials(undefined, dir), undefined, 'no peer');
});
