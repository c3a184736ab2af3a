/**
 * S3Store against a stubbed SDK client: how every kind of answer is classified and retried, and
 * how listings are paged. No storage is involved; the stub answers as the S3 API does.
 */
import t from 'tap';
import { S3Store } from '../../src/remote/s3-store';

const remote = { name: 'off', endpoint: 'http://127.0.0.1:1', bucket: 'b', prefix: '', region: 'us-east-1', credentialsFile: '/nonexistent', createdAt: '' };

type Send = (cmd: { constructor: { name: string }; input: Record<string, unknown> }, o?: { abortSignal?: AbortSignal }) => Promise<unknown>;

function stubbed(send: Send, attempts = 3): { store: S3Store; retries: () => number } {
  let retries = 0;
  const store = new S3Store(remote, { accessKeyId: 'a', secretAccessKey: 'b' }, { retry: { attempts, baseDelayMs: 1, maxDelayMs: 2 }, onRetry: () => { retries++; } });
  (store as unknown as { client: { send: Send } }).client.send = send;
  t.teardown(() => store.close());
  return { store, retries: () => retries };
}

const answer = (status: number, name: string): Error => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });

t.test('each kind of failure gets its code, and only those a retry may cure are retried', async (t) => {
  const cases: Array<[string, Error, string, number]> = [
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'RemoteUnreachable', 2],
    ['timeout', Object.assign(new Error('timed out'), { name: 'TimeoutError' }), 'RemoteUnreachable', 2],
    ['wrong key', answer(403, 'InvalidAccessKeyId'), 'RemoteAuthFailed', 0],
    ['expired token', answer(400, 'ExpiredToken'), 'RemoteAuthFailed', 0],
    ['no bucket', answer(404, 'NoSuchBucket'), 'RemoteBucketMissing', 0],
    ['server error', answer(500, 'InternalError'), 'RemoteError', 2],
    ['throttled', answer(503, 'SlowDown'), 'RemoteError', 2],
    ['too many requests', answer(429, 'TooManyRequests'), 'RemoteError', 2],
    ['request timeout', answer(400, 'RequestTimeout'), 'RemoteError', 2],
    ['bad request', answer(400, 'InvalidArgument'), 'RemoteError', 0],
  ];
  for (const [what, err, code, retried] of cases) {
    let calls = 0;
    const { store, retries } = stubbed(async () => { calls++; throw err; });
    await t.rejects(store.put('k', Buffer.from('x')), { code }, what);
    t.equal(retries(), retried, `${what}: ${retried} retries`);
    t.equal(calls, retried + 1, `${what}: ${calls} attempts`);
  }
});

t.test('a missing key reads as null; a refused signed body is DigestMismatch', async (t) => {
  const { store } = stubbed(async (cmd) => {
    if (cmd.constructor.name === 'PutObjectCommand') throw answer(400, 'XAmzContentSHA256Mismatch');
    throw answer(404, cmd.constructor.name === 'GetObjectCommand' ? 'NoSuchKey' : 'NotFound');
  });
  t.equal(await store.get('k'), null);
  t.equal(await store.head('k'), null);
  await t.rejects(store.put('k', Buffer.from('x'), undefined, { sha256: 'ab'.repeat(32) }), { code: 'DigestMismatch' });
});

t.test('cancelling stops a request that is backing off at once', async (t) => {
  let calls = 0;
  const store = new S3Store(remote, { accessKeyId: 'a', secretAccessKey: 'b' }, { retry: { attempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 } });
  t.teardown(() => store.close());
  (store as unknown as { client: { send: Send } }).client.send = async () => { calls++; throw answer(503, 'SlowDown'); };
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), 50);
  await t.rejects(store.put('k', Buffer.from('x'), ac.signal), { code: 'Cancelled' });
  t.ok(Date.now() - started < 5000, 'without waiting out the backoff');
  t.ok(calls <= 2);
});

/** A bucket of `n` keys listed 1000 at a time, as ListObjectsV2 does. */
function pages(n: number, o: { dropToken?: boolean } = {}): Send {
  const keys = Array.from({ length: n }, (_, i) => `manifests/k${String(i).padStart(6, '0')}`);
  return async (cmd) => {
    const from = cmd.input.ContinuationToken === undefined ? 0 : Number(cmd.input.ContinuationToken);
    const page = keys.slice(from, from + 1000);
    const truncated = from + 1000 < keys.length;
    return {
      Contents: page.map((Key) => ({ Key, Size: 1, LastModified: new Date(0) })),
      IsTruncated: truncated,
      ...(truncated && !o.dropToken ? { NextContinuationToken: String(from + 1000) } : {}),
    };
  };
}

t.test('a listing of more than 1000 keys yields every key once, in order', async (t) => {
  const { store } = stubbed(pages(2500));
  const got: string[] = [];
  for await (const o of store.list('manifests/')) got.push(o.key);
  t.equal(got.length, 2500);
  t.equal(new Set(got).size, 2500);
  t.same(got, [...got].sort());
});

t.test('a listing that says it is truncated but gives no way on fails instead of ending early', async (t) => {
  // gc marks from the manifests a listing shows: one that ended early would let it delete the
  // blocks of the manifests it never saw.
  const { store } = stubbed(pages(2500, { dropToken: true }));
  const got: string[] = [];
  await t.rejects((async () => { for await (const o of store.list('manifests/')) got.push(o.key); })(), { code: 'RemoteError', message: /truncated/ });
  t.equal(got.length, 1000, 'after the first page');
});

t.test('the HTTP handler\'s warnings go to the daemon\'s log, named by remote; a failed request is not logged with its body', async (t) => {
  const logged: Array<[object, string | undefined]> = [];
  const log = { warn: (o: object, msg?: string) => { logged.push([o, msg]); }, error: (o: object, msg?: string) => { logged.push([o, msg]); } };
  const store = new S3Store(remote, { accessKeyId: 'a', secretAccessKey: 'b' }, { log, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
  t.teardown(() => store.close());
  // Nothing listens on the endpoint's port: refused at once.
  await t.rejects(store.put('k', Buffer.from('block body')), { code: 'RemoteUnreachable' });
  t.same(logged, [], 'the failure is the caller\'s to report');
  const handler = (store as unknown as { client: { config: { requestHandler: { httpHandlerConfigs(): { logger: { warn(m: string): void } } } } } }).client.config.requestHandler;
  handler.httpHandlerConfigs().logger.warn('socket usage at capacity');
  t.same(logged, [[{ remote: 'off', sdk: true }, 'socket usage at capacity']]);
});
