import { statSync } from 'node:fs';
import t from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { frame } from '../../src/daemon/protocol/frame';
import { PROTOCOL_VERSION } from '../../src/daemon/protocol/messages';
import type { Job } from '../../src/engine/types';
import { startFakeDaemon } from './fixtures/fake-daemon';
import type { FakeEngine } from './fixtures/fake-engine';
import { RawClient } from './fixtures/raw-client';

/**
 * The id of the first job, once a request sent for it has started it. The request gets there
 * through the socket and the event loop, which no fixed wait outlasts on a loaded machine.
 */
async function firstJob(engine: FakeEngine): Promise<string> {
  while (engine.listJobs().length === 0) await new Promise((r) => setTimeout(r, 5));
  return engine.listJobs()[0]!.id;
}

t.test('the socket file is created with the configured mode', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  t.equal(statSync(d.socketPath).mode & 0o777, 0o600);
});

t.test('hello must come first; the connection survives the mistake', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  const c = await RawClient.connect(d.socketPath);
  t.teardown(() => c.close());
  c.send({ id: 1, method: 'disk.list', params: {} });
  t.match(await c.response(1), { error: { code: 'ProtocolError', message: /first request must be hello/ } });
  c.send({ id: 2, method: 'hello', params: { protocol: PROTOCOL_VERSION, client: 'test' } });
  t.match(await c.response(2), { result: { protocol: PROTOCOL_VERSION, version: '0.0.0-test' } });
  c.send({ id: 3, method: 'disk.list' });
  t.same((await c.response(3)).result, []);
});

t.test('a protocol version mismatch is answered and the connection closed', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  const c = await RawClient.connect(d.socketPath);
  c.send({ id: 1, method: 'hello', params: { protocol: PROTOCOL_VERSION + 1 } });
  t.match(await c.response(1), { error: { code: 'VersionMismatch' } });
  await c.waitClosed();
});

t.test('envelope mistakes are answered and the connection kept', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  const cases: Array<[unknown, number | null, string]> = [
    [[1, 2, 3], null, 'ProtocolError'],
    ['just a string', null, 'ProtocolError'],
    [{ method: 'disk.list' }, null, 'ProtocolError'],
    [{ id: -1, method: 'disk.list' }, null, 'ProtocolError'],
    [{ id: 10, method: 42 }, 10, 'ProtocolError'],
    [{ id: 11, method: 'disk.list', params: [1] }, 11, 'InvalidArgument'],
    [{ id: 12, method: 'disk.list', extra: true }, 12, 'ProtocolError'],
    [{ id: 13, method: 'no.such.method' }, 13, 'UnknownMethod'],
    [{ id: 14, method: 'disk.show', params: {} }, 14, 'InvalidArgument'],
    [{ id: 15, method: 'disk.show', params: { disk: 7 } }, 15, 'InvalidArgument'],
    [{ id: 16, method: 'disk.list', params: { bogus: 1 } }, 16, 'InvalidArgument'],
    [{ id: 17, method: 'disk.add', params: { path: 'relative/x.img' } }, 17, 'InvalidArgument'],
    [{ id: 18, method: 'disk.show', params: { disk: 'nope' } }, 18, 'DiskNotFound'],
  ];
  for (const [msg, id, code] of cases) {
    const before = c.messages.length;
    c.send(msg);
    const reply = await c.until(() => c.messages[before], 2000, JSON.stringify(msg));
    t.equal(reply.id, id, `id for ${JSON.stringify(msg)}`);
    t.match(reply, { error: { code } }, `${code} for ${JSON.stringify(msg)}`);
  }
  t.notOk(c.closed, 'still connected');
  c.send({ id: 99, method: 'version' });
  t.match(await c.response(99), { result: { protocol: PROTOCOL_VERSION, dataDir: '/fake/data' } });
});

t.test('param errors share one message format', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.send({ id: 1, method: 'snapshot.create', params: { disk: 'x', name: 5 } });
  t.match(await c.response(1), { error: { code: 'InvalidArgument', message: /^params\.name must be a string/ } });
  c.send({ id: 2, method: 'clone', params: { snapshot: 's', path: '/x', format: 'vmdk' } });
  t.match(await c.response(2), { error: { message: 'params.format must be one of "raw", "qcow2", got "vmdk" (a string)' } });
});

for (const [what, bytes, code] of [
  ['undecodable msgpack', frame(Buffer.from([0xc1, 0xc1])), 'ProtocolError'],
  ['truncated msgpack', frame(Buffer.from([0x85, 0xa1])), 'ProtocolError'],
  ['an empty frame', Buffer.alloc(4), 'ProtocolError'],
  ['an oversized length', Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]), 'FrameTooLarge'],
  ['text garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'FrameTooLarge'],
] as const) {
  t.test(`${what} is answered with ${code} and the connection closed; others are unaffected`, async (t) => {
    const d = await startFakeDaemon();
    t.teardown(() => d.stop());
    const bystander = await DaemonClient.connect({ socketPath: d.socketPath });
    t.teardown(() => bystander.close());
    const c = await RawClient.ready(d.socketPath);
    c.sendBytes(bytes);
    t.match(await c.response(null), { id: null, error: { code } });
    await c.waitClosed();
    t.same(await bystander.call('disk.list'), []);
    const fresh = await DaemonClient.connect({ socketPath: d.socketPath });
    t.same(await fresh.call('disk.list'), []);
    fresh.close();
  });
}

t.test('a frame over the configured limit is refused', async (t) => {
  const d = await startFakeDaemon({ maxFrameBytes: 4096 });
  t.teardown(() => d.stop());
  const c = await RawClient.ready(d.socketPath);
  c.send({ id: 1, method: 'disk.add', params: { path: `/${'x'.repeat(5000)}` } });
  t.match(await c.response(null), { error: { code: 'FrameTooLarge', message: /limit of 4096 bytes/ } });
  await c.waitClosed();
});

t.test('wait streams progress events and answers with the finished job', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const client = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => client.close());
  const seen: Job[] = [];
  client.on('progress', (ev) => seen.push(ev.job));
  const pending = client.call<Job>('snapshot.create', { disk: 'a', wait: true });
  const id = await firstJob(d.engine);
  d.engine.progress(id, 10, 100);
  d.engine.progress(id, 60, 100);
  d.engine.finish(id, 'succeeded', { id: 's-1' });
  const done = await pending;
  t.equal(done.state, 'succeeded');
  t.same(done.result, { id: 's-1' });
  t.same(seen.map((j) => j.doneBytes), [10, 60, 60]);
  t.equal(seen[seen.length - 1]!.state, 'succeeded');
});

t.test('without wait a long method returns the running job at once', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const client = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => client.close());
  const job = await client.call<Job>('rollback', { disk: 'a', snapshot: 's' });
  t.equal(job.state, 'running');
  const cancelled = await client.call<Job>('job.cancel', { job: job.id });
  t.equal(cancelled.state, 'cancelled');
  t.equal((await client.call<Job>('job.wait', { job: job.id })).state, 'cancelled');
});

t.test('job.watch streams events until the job ends, then stops', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  const client = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => client.close());
  const job = await client.call<Job>('store.verify');
  const events: Job[] = [];
  client.on('progress', (ev) => events.push(ev.job));
  t.equal((await client.call<Job>('job.watch', { job: job.id })).state, 'running');
  d.engine.progress(job.id, 1, 2);
  d.engine.finish(job.id);
  d.engine.progress(job.id, 2, 2); // after the end: not for this watcher any more
  await client.call('version'); // a round trip: every event sent before it has arrived
  t.same(events.map((j) => j.state), ['running', 'succeeded']);
});

t.test('a client that does not read is dropped; others keep being served', async (t) => {
  const d = await startFakeDaemon({ maxBufferedBytes: 256 * 1024, eventHighWaterBytes: 16 * 1024 });
  t.teardown(() => d.stop());
  for (let i = 0; i < 2000; i++) await d.engine.addDisk({ path: `/fake/images/disk-${i}-${'p'.repeat(100)}.img`, name: `disk-${i}` });
  const hog = await RawClient.ready(d.socketPath);
  hog.socket.pause(); // reads nothing from now on
  for (let i = 1; i <= 40; i++) hog.send({ id: i, method: 'disk.list' });
  const other = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => other.close());
  await hog.until(() => (d.server.clientCount === 1 ? true : undefined), 10_000, 'the daemon to drop the hog');
  hog.socket.resume();
  await hog.waitClosed();
  t.ok(hog.messages.length < 40, `the hog got ${hog.messages.length} of 40 answers before being dropped`);
  t.equal((await other.call<unknown[]>('disk.list')).length, 2000);
});

t.test('progress events are dropped for a slow reader but its final answer arrives', async (t) => {
  const d = await startFakeDaemon({ eventHighWaterBytes: 1 });
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.send({ id: 1, method: 'snapshot.create', params: { disk: 'a', wait: true } });
  const id = await firstJob(d.engine);
  c.socket.pause();
  // With a 1-byte high-water mark every event after the first unsent byte is dropped.
  for (let i = 0; i < 2000; i++) d.engine.progress(id, i, 2000);
  d.engine.finish(id);
  c.socket.resume();
  t.match(await c.response(1), { result: { state: 'succeeded' } });
  const events = c.messages.filter((m) => m.event === 'progress');
  t.ok(events.length < 2000, `dropped events (${events.length} delivered)`);
  t.match(events[events.length - 1], { job: { state: 'succeeded' } }, 'the final event is never dropped');
});

t.test('shutting down answers waiting clients and refuses new work', async (t) => {
  const d = await startFakeDaemon();
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const client = await DaemonClient.connect({ socketPath: d.socketPath });
  const waiting = client.call<Job>('snapshot.create', { disk: 'a', wait: true });
  await firstJob(d.engine);
  d.server.stopAccepting();
  await t.rejects(client.call('disk.list'), { code: 'ShuttingDown' });
  await d.engine.close();
  t.equal((await waiting).state, 'cancelled');
  await d.server.closeConnections();
  await t.rejects(client.call('disk.list'), { code: 'DaemonUnavailable' });
  await d.stop();
});
