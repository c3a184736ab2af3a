/**
 * A remote a policy replicates to is not removed from under it: every later run would fail to
 * replicate, and a remote added again under the name (another bucket, perhaps) would be used
 * without a word. No S3 endpoint is needed: adding and removing a remote does not connect.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSmallEngine } from '../helpers/model';

t.test('remote remove is refused while policies replicate to it, naming them, and goes once they do not', async (t) => {
  const f = await openSmallEngine(t);
  const credentialsFile = join(f.images, 'off.cred');
  writeFileSync(credentialsFile, 'aws_access_key_id = a\naws_secret_access_key = b\n', { mode: 0o600 });
  const replication = f.engine.offsite.replication;
  replication.addRemote({ name: 'off', endpoint: 'http://127.0.0.1:9', bucket: 'vm-backups', credentialsFile });
  f.engine.policies.create({ name: 'nightly', hours: [2], replicateTo: 'off' });
  f.engine.policies.create({ name: 'weekly', hours: [3], weekdays: [7], replicateTo: 'off' });

  t.throws(() => replication.removeRemote('off'), {
    code: 'RemoteInUse',
    message: 'remote off is where policies nightly, weekly replicate; change that first (blocksnap policy update nightly --no-replicate-to, or --replicate-to another remote)',
    details: { remote: 'off', policies: ['nightly', 'weekly'] },
  });
  t.same(replication.listRemotes().map((r) => r.name), ['off'], 'the remote stays');

  f.engine.policies.update('nightly', { replicateTo: null });
  t.throws(() => replication.removeRemote('off'), { code: 'RemoteInUse', message: /^remote off is where policy weekly replicates;/ });
  f.engine.policies.delete('weekly');
  t.equal(replication.removeRemote('off').name, 'off', 'removed once no policy replicates to it');
  t.throws(() => replication.removeRemote('off'), { code: 'RemoteNotFound' });
});
