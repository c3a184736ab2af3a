/**
 * A remote added again under a name already configured is refused, and the one configured keeps
 * its settings: replacing them silently would send the next replication, and the restores that
 * read its manifests, to another bucket. No S3 endpoint is needed: adding a remote does not connect.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSmallEngine } from '../helpers/model';

t.test('remote add under a name already configured is refused (RemoteExists) and the remote keeps its settings', async (t) => {
  const f = await openSmallEngine(t);
  const credentialsFile = join(f.images, 'off.cred');
  writeFileSync(credentialsFile, 'aws_access_key_id = a\naws_secret_access_key = b\n', { mode: 0o600 });
  const replication = f.engine.offsite.replication;
  const first = replication.addRemote({ name: 'off', endpoint: 'http://127.0.0.1:9', bucket: 'vm-backups', credentialsFile });

  t.throws(() => replication.addRemote({ name: 'off', endpoint: 'http://127.0.0.2:9', bucket: 'other-bucket', prefix: 'elsewhere', credentialsFile }), {
    code: 'RemoteExists',
    message: 'a remote named "off" exists already',
  });
  t.same(replication.listRemotes(), [first], 'the configured remote is the only one, as it was added');
});
