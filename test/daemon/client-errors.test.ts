/**
 * The daemon's errors as the client reports them. A refusal of a method or param this client
 * sends only to a daemon of its own version means the daemon is older, which it cannot say itself.
 */
import t from 'tap';
import { remoteError } from '../../src/daemon/client';

t.test('an unknown method says the daemon is older than the client', async (t) => {
  const e = remoteError({ code: 'UnknownMethod', message: 'unknown method "clone.cow"' });
  t.equal(e.code, 'UnknownMethod', 'the code is the daemon\'s');
  t.match(e.message, /^unknown method "clone\.cow"; the daemon is older than this client: upgrade and restart it/);
});

t.test('a param the daemon does not know says so too', async (t) => {
  const e = remoteError({ code: 'InvalidArgument', message: 'params.stream must be absent (known: snapshot, path, base, wait)', details: { param: 'stream' } });
  t.match(e.message, /must be absent \(known: snapshot, path, base, wait\); the daemon is older than this client/);
  t.same(e.details, { param: 'stream' });
});

t.test('other refusals are reported as the daemon worded them', async (t) => {
  t.equal(remoteError({ code: 'InvalidArgument', message: 'params.name must be a string' }).message, 'params.name must be a string');
  t.equal(remoteError({ code: 'DiskBusy', message: 'disk a is busy' }).message, 'disk a is busy');
});
