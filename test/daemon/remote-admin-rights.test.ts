/**
 * A remote and the backups on it are the administrator's: removing it, deleting a snapshot from it
 * and collecting its garbage need the right remote.add needs (root or the daemon's user). Other
 * socket users are refused before the remote is looked at, so the remote named need not exist.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { lookupMethod, type CallContext } from '../../src/daemon/methods';
import { StreamChannels } from '../../src/daemon/stream-channels';
import { openSmallEngine } from '../helpers/model';

const OTHER = process.getuid!() === 4242 ? 4243 : 4242;

async function withRemote(t: Test) {
  const f = await openSmallEngine(t);
  const cred = join(f.dataDir, '..', 'off.cred');
  writeFileSync(cred, 'aws_access_key_id = AKIAROOT\naws_secret_access_key = rootsecret\n', { mode: 0o600 });
  const call = (peerUid: number, name: string, params: Record<string, unknown>): Promise<unknown> => {
    const ctx: CallContext = {
      engine: f.engine, info: { version: 'test', build: 'test', pid: process.pid, startedAt: '' }, watch() {}, unwatch() {}, channels: new StreamChannels(() => undefined), peerUid,
    };
    return lookupMethod(name)!.call(ctx, params);
  };
  await call(process.getuid!(), 'remote.add', { name: 'off', endpoint: 'http://127.0.0.1:9', bucket: 'backups', credentialsFile: cred });
  return { f, call };
}

t.test('remote.remove from another user is refused and the remote stays', async (t) => {
  const { f, call } = await withRemote(t);
  await t.rejects(call(OTHER, 'remote.remove', { remote: 'off' }), { code: 'NotAuthorized', message: new RegExp(`may remove a remote, not uid ${OTHER}`) });
  t.match(f.engine.offsite.replication.listRemotes(), [{ name: 'off' }]);
});

t.test('remote.delete from another user is refused before the remote is reached', async (t) => {
  const { call } = await withRemote(t);
  await t.rejects(call(OTHER, 'remote.delete', { remote: 'off', snapshot: 's-0000000000000001', force: true }),
    { code: 'NotAuthorized', message: new RegExp(`may delete a snapshot from a remote, not uid ${OTHER}`) });
});

t.test('remote.gc from another user is refused and starts no job', async (t) => {
  const { f, call } = await withRemote(t);
  await t.rejects(call(OTHER, 'remote.gc', { remote: 'off' }), { code: 'NotAuthorized', message: new RegExp(`may collect garbage on a remote, not uid ${OTHER}`) });
  t.same(f.engine.listJobs(), []);
});

t.test('another user may still list and show a remote, and the daemon\'s user removes it', async (t) => {
  const { f, call } = await withRemote(t);
  t.match(await call(OTHER, 'remote.list', {}), [{ name: 'off' }]);
  t.match(await call(OTHER, 'remote.show', { remote: 'off' }), { name: 'off' });
  t.match(await call(process.getuid!(), 'remote.remove', { remote: 'off' }), { name: 'off' });
  t.same(f.engine.offsite.replication.listRemotes(), []);
});
