/**
 * A storage that answers a GET at once and then sends its body a byte at a time, each soon enough
 * to keep the idle timer quiet: the attempt still ends at its whole-attempt limit, body read
 * included, instead of lasting as long as the trickle. The storage here is a real HTTP server.
 */
import { createServer, type ServerResponse } from 'node:http';
import t, { type Test } from 'tap';
import { S3Store } from '../../src/remote/s3-store';

const BODY_BYTES = 100_000; // a byte every 20 ms: over half an hour, beyond any test's time
const TRICKLE_MS = 20;
const timeouts = { connectMs: 1000, idleMs: 1000, requestMs: 300 };

/** Answers every request 200 with a body it trickles; counts the bodies begun and cut off. */
async function tricklingServer(t: Test): Promise<{ endpoint: string; begun: () => number; cutOff: () => number }> {
  const open = new Set<ServerResponse>();
  let begun = 0;
  let cutOff = 0;
  const server = createServer((_req, res) => {
    begun++;
    open.add(res);
    res.writeHead(200, { 'Content-Length': String(BODY_BYTES), 'Content-Type': 'application/octet-stream' });
    const timer = setInterval(() => res.write('x'), TRICKLE_MS);
    res.on('close', () => {
      clearInterval(timer);
      open.delete(res);
      if (!res.writableFinished) cutOff++;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const r of open) r.destroy();
    server.close(() => resolve());
  }));
  const { port } = server.address() as { port: number };
  return { endpoint: `http://127.0.0.1:${port}`, begun: () => begun, cutOff: () => cutOff };
}

function storeOn(t: Test, endpoint: string, o: { attempts?: number; requestMs?: number } = {}): S3Store {
  const store = new S3Store(
    { name: 'off', endpoint, bucket: 'trickle', prefix: '', region: 'us-east-1', credentialsFile: '/nonexistent', createdAt: '' },
    { accessKeyId: 'a', secretAccessKey: 'b' },
    { timeouts: { ...timeouts, requestMs: o.requestMs ?? timeouts.requestMs }, retry: { attempts: o.attempts ?? 1, baseDelayMs: 1, maxDelayMs: 1 } },
  );
  t.teardown(() => store.close());
  return store;
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

t.test('a GET whose body trickles in is abandoned at the whole-attempt limit and its connection dropped', async (t) => {
  const server = await tricklingServer(t);
  const store = storeOn(t, server.endpoint);
  await t.rejects(store.get('k'), { code: 'RemoteUnreachable', message: /GET .*: k: cannot reach .* \(no whole answer within 300 ms\)/ });
  await until(() => server.cutOff() === 1);
  t.pass('the server saw the body cut off');
});

t.test('each attempt of a trickling GET gets the limit afresh, and the last one fails', async (t) => {
  const server = await tricklingServer(t);
  const store = storeOn(t, server.endpoint, { attempts: 3 });
  await t.rejects(store.get('k'), { code: 'RemoteUnreachable' });
  t.equal(server.begun(), 3);
});

t.test('a cancel ends a trickling GET as cancelled, not as a timeout', async (t) => {
  const server = await tricklingServer(t);
  const store = storeOn(t, server.endpoint, { requestMs: 600_000 });
  const job = new AbortController();
  const get = store.get('k', job.signal);
  await until(() => server.begun() === 1);
  job.abort();
  await t.rejects(get, { code: 'Cancelled' });
});
