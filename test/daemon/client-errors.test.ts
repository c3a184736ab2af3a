/**
 * The daemon's errors as the client reports them. A refusal of a method or param this client
 * sends only to a daemon of its own build means the daemon runs other code, which it cannot say
 * itself; a daemon of the same build refusing one says nothing of versions.
 */
import t from 'tap';
import { buildId } from '../../src/daemon/build-info';
import { remoteError } from '../../src/daemon/client';

t.test('an unknown method says the daemon runs other code than the client', async (t) => {
  const e = remoteError({ code: 'UnknownMethod', message: 'unknown method "clone.cow"' });
  t.equal(e.code, 'UnknownMethod', 'the code is the daemon\'s');
  t.match(e.message, /^unknown method "clone\.cow"; the daemon runs other code than this client, most likely an older build: upgrade and restart it/);
});

t.test('a param the daemon does not know says so too', async (t) => {
  const e = remoteError({ code: 'InvalidArgument', message: 'params.stream must be absent (known: snapshot, path, base, wait)', details: { param: 'stream' } });
  t.match(e.message, /must be absent \(known: snapshot, path, base, wait\); the daemon runs other code than this client/);
  t.same(e.details, { param: 'stream' });
});

t.test('other refusals are reported as the daemon worded them', async (t) => {
  t.equal(remoteError({ code: 'InvalidArgument', message: 'params.name must be a string' }).message, 'params.name must be a string');
  t.equal(remoteError({ code: 'DiskBusy', message: 'disk a is busy' }).message, 'disk a is busy');
});

t.test('a daemon that said which build it runs is named in the hint', async (t) => {
  const e = remoteError({ code: 'UnknownMethod', message: 'unknown method "clone.cow"' }, { version: '0.1.0', build: '0123456789ab' });
  t.match(e.message, /; the daemon \(0\.1\.0, build 0123456789ab\) runs other code than this client/);
  const old = remoteError({ code: 'UnknownMethod', message: 'unknown method "clone.cow"' }, { version: '0.1.0' });
  t.match(old.message, /; the daemon \(0\.1\.0\) runs other code than this client/, 'a daemon from before build ids');
});

t.test('a daemon of this very build refusing a method is not said to be older', async (t) => {
  const e = remoteError({ code: 'UnknownMethod', message: 'unknown method "no.such"' }, { version: '0.1.0', build: buildId() });
  t.equal(e.message, 'unknown method "no.such"');
});
