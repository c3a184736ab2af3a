/**
 * How a connection holds a hostile or broken client to its limits (connection.ts): requests in
 * flight, answers it does not read, frames that never finish, bytes it sends while pushed back,
 * half-closes, and clients past the connection limit. Against the server with a stand-in engine,
 * with the limits made small so that each case runs in milliseconds.
 */
import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { frame } from '../../src/daemon/protocol/frame';
import { encodeMessage } from '../../src/daemon/protocol/messages';
import { startFakeDaemon, type FakeDaemon } from './fixtures/fake-daemon';
import { RawClient } from './fixtures/raw-client';
import { waitFor } from './fixtures/wait-for';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * How long to wait for what must come: the limits below are small, but the answers are many or
 * large, and on a loaded machine this process (client and daemon both) gets little CPU.
 */
const ARRIVES_MS = 60_000;

function frames(n: number, make: (i: number) => object): Buffer {
  return Buffer.concat(Array.from({ length: n }, (_, i) => frame(encodeMessage(make(i)))));
}

/** A ready client whose request 1 (snapshot.create with wait) runs until the test finishes the job. */
async function clientWaitingForJob(d: FakeDaemon): Promise<RawClient> {
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const c = await RawClient.ready(d.socketPath);
  c.send({ id: 1, method: 'snapshot.create', params: { disk: 'a', wait: true } });
  await waitFor('the job to start', () => d.engine.listJobs().length > 0);
  return c;
}

t.test('no more than maxInFlight requests of a client run at once, however many one write holds', async (t) => {
  const d = await startFakeDaemon({ maxInFlight: 8 });
  t.teardown(() => d.stop());
  const job = d.engine.startVerify();
  let running = 0;
  const waitJob = d.engine.waitJob.bind(d.engine);
  d.engine.waitJob = (id) => {
    running++;
    return waitJob(id);
  };
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  // One write, so the daemon reads all 200 frames at once: the limit must hold within a chunk.
  c.sendBytes(frames(200, (i) => ({ id: 100 + i, method: 'job.wait', params: { job: job.id } })));
  await waitFor('the first requests to start', () => running >= 8);
  await sleep(200);
  t.equal(running, 8, 'only maxInFlight job.wait calls reached the engine');
  d.engine.finish(job.id);
  await c.until(() => (c.messages.filter((m) => typeof m.id === 'number' && m.id >= 100).length === 200 ? true : undefined), ARRIVES_MS, 'every answer');
  t.equal(running, 200, 'the rest ran as the first ones finished');
});

t.test('a client that does not read its answers gets no further request run until it reads', async (t) => {
  // maxBufferedBytes is out of the way: the answers, once read, are 21 MB together.
  const d = await startFakeDaemon({ eventHighWaterBytes: 16 * 1024, maxBufferedBytes: 256 * 1024 * 1024 });
  t.teardown(() => d.stop());
  // Each listing is about 1 MB: far more than the kernel's socket buffer takes.
  for (let i = 0; i < 2000; i++) await d.engine.addDisk({ path: `/fake/images/disk-${i}-${'p'.repeat(400)}.img`, name: `disk-${i}` });
  let listings = 0;
  const listDisks = d.engine.listDisks.bind(d.engine);
  d.engine.listDisks = () => {
    listings++;
    return listDisks();
  };
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.socket.pause();
  c.send({ id: 1, method: 'disk.list' });
  await waitFor('the first listing', () => listings === 1);
  await sleep(100);
  c.sendBytes(frames(20, (i) => ({ id: 2 + i, method: 'disk.list' })));
  await sleep(300);
  t.equal(listings, 1, 'nothing more runs while the first answer is unread');
  c.socket.resume();
  await c.until(() => (c.messages.filter((m) => typeof m.id === 'number' && m.id >= 1).length === 21 ? true : undefined), ARRIVES_MS, 'every answer');
  t.equal(listings, 21, 'the held requests ran once the client read');
});

for (const [what, bytes] of [
  ['a length prefix and nothing more', frame(encodeMessage({ id: 1, method: 'version' })).subarray(0, 4)],
  ['a frame cut off in its payload', frame(encodeMessage({ id: 1, method: 'version' })).subarray(0, 10)],
  ['a frame cut off in its length prefix', Buffer.from([0, 0])],
] as const) {
  t.test(`${what} ends the connection once frameTimeoutMs has passed`, async (t) => {
    const d = await startFakeDaemon({ frameTimeoutMs: 200 });
    t.teardown(() => d.stop());
    const c = await RawClient.ready(d.socketPath);
    t.teardown(() => c.close());
    c.sendBytes(bytes);
    t.match(await c.response(null), { id: null, error: { code: 'ProtocolError', message: /did not arrive whole within 200 ms/ } });
    await c.waitClosed();
  });
}

t.test('the frame deadline is per frame: a client whose writes always end inside a frame is served', async (t) => {
  // Each frame is finished 50 ms after it began, 20 times within its deadline: this process (the
  // client and the daemon) may stall for most of a second on a loaded machine, and a stall longer
  // than the deadline would fire it before the daemon read the bytes already sent.
  const d = await startFakeDaemon({ frameTimeoutMs: 1000 });
  t.teardown(() => d.stop());
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  const bytes = frames(60, (i) => ({ id: 100 + i, method: 'version' }));
  // 60 pieces over 3 s, each ending inside a frame: some frame is always incomplete.
  const piece = Math.ceil(bytes.length / 60) + 1;
  for (let off = 0; off < bytes.length; off += piece) {
    c.sendBytes(bytes.subarray(off, off + piece));
    await sleep(50);
  }
  await c.until(() => (c.messages.filter((m) => typeof m.id === 'number' && m.id >= 100).length === 60 ? true : undefined), ARRIVES_MS, 'every answer');
  t.notOk(c.closed, 'still connected');
});

t.test('a client that sends more than a frame and maxQueuedBytes while it is pushed back is disconnected', async (t) => {
  const d = await startFakeDaemon({ maxInFlight: 4, pausedProbeMs: 20, maxFrameBytes: 4096, maxQueuedBytes: 4096 });
  t.teardown(() => d.stop());
  const job = d.engine.startVerify();
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.sendBytes(frames(4, (i) => ({ id: 10 + i, method: 'job.wait', params: { job: job.id } })));
  // The four waits never end: reading stays paused, and what follows can only queue.
  c.sendBytes(frames(5000, (i) => ({ id: 100 + i, method: 'version' })));
  t.match(await c.response(null), { id: null, error: { code: 'ProtocolError', message: /queued/ } });
  await c.waitClosed();
});

t.test('a client that shuts down its sending side still gets the answer to every request it sent', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.send({ id: 1, method: 'snapshot.create', params: { disk: 'a', wait: true } });
  c.send({ id: 2, method: 'version' });
  await waitFor('the job to start', () => d.engine.listJobs().length > 0);
  c.socket.end();
  t.match(await c.response(2), { result: { protocol: 1 } });
  await sleep(100);
  t.notOk(c.closed, 'the connection stays open while the wait runs');
  d.engine.finish(d.engine.lastJobId);
  t.match(await c.response(1), { result: { state: 'succeeded' } }, 'the wait is answered after the half-close');
  await c.waitClosed();
});

t.test('a client that shuts down its sending side inside a frame is told so', async (t) => {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.sendBytes(frame(encodeMessage({ id: 1, method: 'version' })).subarray(0, 7));
  c.socket.end();
  t.match(await c.response(null), { id: null, error: { code: 'ProtocolError', message: /middle of a frame/ } });
  await c.waitClosed();
});

const connectionLimits = [
  { what: 'a client past maxConnections', o: { maxConnections: 2 }, message: /at most 2 clients at once/ },
  { what: 'a user past maxConnectionsPerUser (the daemon has room for others)', o: { maxConnections: 10, maxConnectionsPerUser: 2 },
    message: new RegExp(`at most 2 clients of one user at once and uid ${process.getuid!()} has`) },
];
for (const { what, o, message } of connectionLimits) {
  t.test(`${what} is told why and closed; a slot that frees is taken again`, async (t) => {
    const d = await startFakeDaemon({}, o);
    t.teardown(() => d.stop());
    const held = [await RawClient.ready(d.socketPath), await RawClient.ready(d.socketPath)];
    t.teardown(() => held.forEach((h) => h.close()));
    const c = await RawClient.connect(d.socketPath);
    t.teardown(() => c.close());
    t.match(await c.response(null), { id: null, error: { code: 'DaemonUnavailable', message } });
    await c.waitClosed();
    held[0]!.close();
    await waitFor('the slot to free', () => d.server.clientCount === 1);
    const fresh = await DaemonClient.connect({ socketPath: d.socketPath });
    t.same(await fresh.call('disk.list'), []);
    fresh.close();
  });
}

t.test('a waiting client that stops reading while its job sends progress is not disconnected, and gets the end', async (t) => {
  const d = await startFakeDaemon({ eventHighWaterBytes: 16 * 1024, stallTimeoutMs: 100 });
  t.teardown(() => d.stop());
  const c = await clientWaitingForJob(d);
  t.teardown(() => c.close());
  c.socket.pause();
  const id = d.engine.lastJobId;
  // Far more than the kernel's socket buffers and the high-water mark hold together.
  for (let i = 1; i <= 20_000; i++) d.engine.progress(id, i, 20_000);
  await sleep(500); // five stall timeouts
  t.notOk(c.closed, 'still connected although it read nothing');
  d.engine.finish(id);
  await sleep(500);
  t.notOk(c.closed, 'still connected once its job ended');
  c.socket.resume();
  t.match(await c.response(1), { result: { state: 'succeeded' } });
  t.ok(c.messages.some((m) => m.event === 'progress' && (m.job as { state: string }).state === 'succeeded'), 'the job\'s last event came too');
});

t.test('a client that leaves answers unread beyond the high-water mark is disconnected after stallTimeoutMs', async (t) => {
  const d = await startFakeDaemon({ eventHighWaterBytes: 16 * 1024, stallTimeoutMs: 100 });
  t.teardown(() => d.stop());
  // A listing of about 1 MB: more than the kernel's socket buffers take.
  for (let i = 0; i < 2000; i++) await d.engine.addDisk({ path: `/fake/images/disk-${i}-${'p'.repeat(400)}.img`, name: `disk-${i}` });
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.socket.pause();
  c.send({ id: 1, method: 'disk.list' });
  await waitFor('the daemon to drop the client', () => d.server.clientCount === 0, ARRIVES_MS);
  t.pass('disconnected');
});

t.test('a client that reads one large answer slowly, for longer than stallTimeoutMs, is not disconnected', async (t) => {
  const d = await startFakeDaemon({ eventHighWaterBytes: 16 * 1024, stallTimeoutMs: 300, maxBufferedBytes: 256 * 1024 * 1024 });
  t.teardown(() => d.stop());
  // A listing of about 16 MB, read in bursts every 100 ms: it takes many stall timeouts to read,
  // and the stream's buffer never empties (no 'drain') until the last burst.
  for (let i = 0; i < 2000; i++) await d.engine.addDisk({ path: `/fake/images/disk-${i}-${'p'.repeat(8000)}.img`, name: `disk-${i}` });
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.socket.pause();
  let bursts = 0;
  const reader = setInterval(() => {
    bursts++;
    c.socket.resume();
    setImmediate(() => c.socket.pause());
  }, 100);
  t.teardown(() => clearInterval(reader));
  c.send({ id: 1, method: 'disk.list' });
  const answer = await c.until(() => c.messages.find((m) => m.id === 1), ARRIVES_MS, 'the listing');
  t.ok(bursts > 3, `the answer took ${bursts} bursts of reading, more than one stall timeout`);
  t.equal((answer as { result: unknown[] }).result.length, 2000, 'the whole listing arrived');
  t.equal(d.server.clientCount, 1, 'the client is still connected');
});

t.test('a client that hangs up while its job.wait runs is dropped at once, not when the job ends', async (t) => {
  const d = await startFakeDaemon({ pausedProbeMs: 50 });
  t.teardown(() => d.stop());
  const c = await clientWaitingForJob(d);
  c.close();
  // The job never ends: any deadline tells "at once" from "when the job ends".
  await waitFor('the slot to free', () => d.server.clientCount === 0, ARRIVES_MS);
  t.equal(d.engine.getJob(d.engine.lastJobId).state, 'running', 'the job the client waited for still runs');
});

t.test('a client that only shuts down its sending side is not taken for one that hung up', async (t) => {
  const d = await startFakeDaemon({ pausedProbeMs: 20 });
  t.teardown(() => d.stop());
  const c = await clientWaitingForJob(d);
  t.teardown(() => c.close());
  c.socket.end();
  await sleep(300); // fifteen looks at the socket
  t.notOk(c.closed, 'still connected');
  d.engine.finish(d.engine.lastJobId);
  t.match(await c.response(1), { result: { state: 'succeeded' } });
});

t.test('a client with nothing running for idleTimeoutMs is told why and disconnected', async (t) => {
  const d = await startFakeDaemon({ idleTimeoutMs: 200 });
  t.teardown(() => d.stop());
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  t.match(await c.response(null), { id: null, error: { code: 'DaemonUnavailable', message: /without a request/ } });
  await c.waitClosed();
  await waitFor('the slot to free', () => d.server.clientCount === 0);
});

/**
 * For the clients that must stay connected past the idle limit: between hello and their first
 * request nothing runs, and a stall of this process as long as the limit there would count as idle.
 */
const IDLE_MS = 1000;

t.test('a client whose request runs longer than idleTimeoutMs is not idle, and is once it is answered', async (t) => {
  const d = await startFakeDaemon({ idleTimeoutMs: IDLE_MS });
  t.teardown(() => d.stop());
  const c = await clientWaitingForJob(d);
  t.teardown(() => c.close());
  await sleep(3 * IDLE_MS);
  t.notOk(c.closed, 'still connected while the wait runs');
  d.engine.finish(d.engine.lastJobId);
  t.match(await c.response(1), { result: { state: 'succeeded' } });
  t.match(await c.response(null), { error: { code: 'DaemonUnavailable' } }, 'idle from the answer on');
});

t.test('a client watching a job is not idle', async (t) => {
  const d = await startFakeDaemon({ idleTimeoutMs: IDLE_MS });
  t.teardown(() => d.stop());
  const job = d.engine.startVerify();
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.send({ id: 1, method: 'job.watch', params: { job: job.id } });
  await c.response(1);
  await sleep(3 * IDLE_MS);
  t.notOk(c.closed, 'still connected while the job it watches runs');
  d.engine.finish(job.id);
  t.match(await c.response(null), { error: { code: 'DaemonUnavailable' } }, 'idle once the job ended');
});

t.test('a client whose export stream is open is not idle, and is once the stream\'s job has ended', async (t) => {
  // A raw client may start an export without waiting for its job and only acknowledge data: while
  // its reader is slow, no request runs, yet its job still needs this connection.
  const d = await startFakeDaemon({ idleTimeoutMs: IDLE_MS });
  t.teardown(() => d.stop());
  Object.assign(d.engine.offsite, { streams: { startExport: () => d.engine.startVerify() } });
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.send({ id: 1, method: 'snapshot.export', params: { snapshot: 's', stream: 'out' } });
  t.match(await c.response(1), { result: { state: 'running' } });
  await sleep(3 * IDLE_MS);
  t.notOk(c.closed, 'still connected while its stream is open');
  d.engine.finish(d.engine.lastJobId);
  t.match(await c.response(null), { error: { code: 'DaemonUnavailable' } }, 'idle once the stream closed with its job');
});

t.test('refusals of one user past its limit cannot pile up and lock another user out', { skip: process.getuid!() !== 0 && 'needs root to connect as a second user' }, async (t) => {
  const d = await startFakeDaemon({ closeGraceMs: 10_000 }, { maxConnections: 20, maxConnectionsPerUser: 2 });
  t.teardown(() => d.stop());
  chmodSync(d.dir, 0o755);
  chmodSync(d.socketPath, 0o666);
  const held = [await RawClient.ready(d.socketPath), await RawClient.ready(d.socketPath)];
  t.teardown(() => held.forEach((h) => h.close()));
  // A tool that leaks connections and retries at once when refused, never closing its end.
  const flood: Socket[] = [];
  t.teardown(() => flood.forEach((s) => s.destroy()));
  for (let i = 0; i < 40; i++) {
    const s = connect({ path: d.socketPath, allowHalfOpen: true });
    s.on('error', () => undefined);
    flood.push(s);
    await new Promise<void>((resolve) => { s.once('data', () => resolve()); s.once('end', () => resolve()); s.once('close', () => resolve()); });
  }
  // Another user connects: it must be served (the daemon waits for its hello), not dropped.
  // Spawned, not run synchronously: the daemon under test shares this process's event loop.
  // Through env -u: tap's process-info hook, which it adds to every child's NODE_OPTIONS, would
  // write its record into .tap/ as that user on exit, and fail.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', `
    const s = require('node:net').connect(${JSON.stringify(d.socketPath)});
    let got = 'accepted';
    s.on('data', () => { got = 'refused'; });
    s.on('error', () => { got = 'refused'; });
    s.on('close', () => { got = 'refused'; });
    setTimeout(() => { process.stdout.write(got); process.exit(0); }, 500);
  `], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  await new Promise((resolve) => child.once('close', resolve));
  t.equal(out, 'accepted', 'another user is served while one user floods past its limit');
});
