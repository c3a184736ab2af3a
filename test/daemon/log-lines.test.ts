/**
 * The daemon's log lines are JSON read by machines (journald, jq): a field named like one of
 * pino's own keys would repeat it in the line, and a parser keeps only the last of the two.
 */
import { PassThrough } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { startFakeDaemon } from './fixtures/fake-daemon';
import { RawClient } from './fixtures/raw-client';

t.test('a connection closed after a protocol error logs one line that parses with its reason', async (t) => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  const d = await startFakeDaemon({ helloTimeoutMs: 50 }, { log: pino({ level: 'warn' }, out) });
  t.teardown(() => d.stop());
  const c = await RawClient.connect(d.socketPath);
  t.teardown(() => c.close());
  await c.waitClosed();
  const line = text.split('\n').find((l) => l.includes('closing connection after a protocol error'));
  t.ok(line, `the close is logged: ${text}`);
  t.equal(line!.match(/"msg":/g)?.length, 1, 'one message key');
  t.match(JSON.parse(line!), { msg: 'closing connection after a protocol error', code: 'ProtocolError', reason: 'no hello within 50 ms' });
});
