/**
 * A block's PUT carries its digest as the SigV4 payload hash; a real radosgw (test/infra/ceph)
 * then checks the body against it, so a body that does not match the digest never lands.
 */
import { createHash } from 'node:crypto';
import t from 'tap';
import { S3Store } from '../../src/remote/s3-store';
import { useCeph } from '../infra/ceph/fixture';
import { newBucket } from '../infra/ceph/s3';

const ceph = useCeph(t);

if (ceph) {
  t.test('the store accepts a body matching the given SHA-256 and refuses one that does not', async (t) => {
    const bucket = await newBucket(ceph, 'payload');
    const store = new S3Store(
      { name: 'p', endpoint: ceph.endpoint, bucket, prefix: '', region: 'us-east-1', credentialsFile: '/nonexistent', createdAt: '' },
      { accessKeyId: ceph.accessKey, secretAccessKey: ceph.secretKey },
    );
    t.teardown(() => store.close());
    const body = Buffer.alloc(1024 * 1024, 5);
    const digest = createHash('sha256').update(body).digest('hex');
    await store.put('right', body, undefined, { sha256: digest });
    t.ok((await store.get('right'))?.equals(body), 'stored as sent');
    const wrong = createHash('sha256').update('something else').digest('hex');
    await t.rejects(store.put('wrong', body, undefined, { sha256: wrong }), { code: 'DigestMismatch', message: /XAmzContentSHA256Mismatch/, details: { digest: wrong } });
    t.equal(await store.head('wrong'), null, 'nothing was stored under the key');
  });
}
