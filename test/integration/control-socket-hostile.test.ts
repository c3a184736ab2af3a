/**
 * Hostile and broken clients of the control socket, against the real daemon: what only the real
 * engine and process show (catalog lookups, a stream's job holding its disk, the daemon's memory,
 * the CLI's report). The connection rules themselves are in test/daemon/connection-limits.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import t from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { frame } from '../../src/daemon/protocol/frame';
import { encodeMessage } from '../../src/daemon/protocol/messages';
import type { Job } from '../../src/engine/types';
import { RawClient } from '../daemon/fixtures/raw-client';
import { freshDaemon } from './fixtures/harness';
import { MiB, makeImage } from './fixtures/images';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rssBytes(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

t.test('a request in msgpackr records is refused as undecodable, and the daemon serves on', async (t) => {
  // msgpackr compiles a reader function per record structure: one 1 MiB frame of them held the
  // event loop for over a second. The protocol is plain msgpack, so records never reach msgpackr.
  const d = await freshDaemon(t);
  const c = await RawClient.ready(d.socketPath);
  t.teardown(() => c.close());
  c.sendBytes(frame(new Packr({ useRecords: true }).pack({ id: 1, method: 'disk.list', params: {} })));
  t.match(await c.response(null), { id: null, error: { code: 'ProtocolError', message: /msgpack extension \(type 114\)/ } });
  await c.waitClosed();
  t.same(await d.json('disk', 'list'), []);
});

t.test('job ids and remote names too long for a catalog key are InvalidArgument, never Internal', async (t) => {
  // The catalog throws on keys past about 2000 bytes; the daemon answered that as Internal.
  const d = await freshDaemon(t);
  const c = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => c.close());
  const long = 'x'.repeat(4096);
  const calls: Array<[string, Record<string, unknown>, string]> = [
    ['job.show', { job: long }, 'job'], ['job.cancel', { job: long }, 'job'], ['job.wait', { job: long }, 'job'], ['job.watch', { job: long }, 'job'],
    ['remote.show', { remote: long }, 'remote'], ['remote.remove', { remote: long }, 'remote'], ['remote.check', { remote: long }, 'remote'],
    ['remote.snapshots', { remote: long }, 'remote'], ['remote.gc', { remote: long }, 'remote'],
    ['remote.delete', { remote: long, snapshot: 's' }, 'remote'], ['replicate', { source: 'd', remote: long }, 'remote'],
    ['restore', { remote: long, snapshot: 's', path: join(d.imageRoot, 'r.img') }, 'remote'],
    ['import', { remote: long, snapshot: 's', disk: 'd' }, 'remote'],
  ];
  for (const [method, params, param] of calls) {
    await t.rejects(c.call(method, params), { code: 'InvalidArgument', message: `params.${param} must be a string of 1 to 128 characters, got a string of 4096 characters` }, method);
  }
  await t.rejects(c.call('job.show', { job: 'x'.repeat(128) }), { code: 'JobNotFound' }, 'the longest key allowed is looked up');
});

t.test('a client that hangs up while the daemon does not read it releases its import and the disk', async (t) => {
  // With 64 requests in flight the daemon stops reading the client, and a socket nobody reads never
  // reports that its peer is gone: the import waited for ever for data, and its disk stayed busy.
  const d = await freshDaemon(t);
  makeImage(join(d.imageRoot, 'vm.img'), 8 * MiB, [0]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  const c = await RawClient.ready(d.socketPath);
  c.send({ id: 1, method: 'snapshot.import', params: { stream: 's', disk: 'vm' } });
  const job = (await c.response(1)).result as Job;
  // 64 waits for the import (they can end only with it), then more than the socket's buffers hold.
  c.sendBytes(Buffer.concat(Array.from({ length: 3000 }, (_, i) => frame(encodeMessage({ id: 100 + i, method: 'job.wait', params: { job: job.id } })))));
  await sleep(500);
  c.close();
  const watcher = await DaemonClient.connect({ socketPath: d.socketPath });
  t.teardown(() => watcher.close());
  // An import that lost track of its client waits for ever: a minute tells that apart on a loaded
  // machine too. Unref'd: the file need not wait out the minute once the job has ended.
  const late = new Promise<null>((r) => setTimeout(() => r(null), 60_000).unref());
  const ended = await Promise.race([watcher.call<Job>('job.wait', { job: job.id }), late]);
  t.match(ended, { state: 'failed', error: { code: 'StreamClosed' } }, 'the import failed once the client was gone');
  const snap = await d.cli('snapshot', 'create', 'vm', '--json');
  t.equal(snap.code, 0, 'the disk is free again');
});

t.test('clients that do not read their answers cost the daemon little memory', async (t) => {
  // Each such client could make the daemon buffer 16 MiB of answers (20 of them grew its RSS by
  // about 600 MiB); now no request of a client runs while 256 KiB of its answers are unread.
  const d = await freshDaemon(t);
  const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.ready(d.socketPath)));
  t.teardown(() => clients.forEach((c) => c.close()));
  const before = rssBytes(d.proc.pid!);
  for (const c of clients) c.socket.pause();
  // Each answer (DiskNotFound, naming the ref) is as large as its request: 4 KB.
  const burst = Buffer.concat(Array.from({ length: 250 }, () => frame(encodeMessage({ id: 5, method: 'disk.show', params: { disk: 'x'.repeat(4000) } }))));
  let peak = before;
  const until = Date.now() + 8000;
  while (Date.now() < until) {
    for (const c of clients) if (!c.closed && c.socket.writableLength < 1024 * 1024) c.sendBytes(burst);
    await sleep(50);
    peak = Math.max(peak, rssBytes(d.proc.pid!));
  }
  t.ok(peak - before < 100 * MiB, `the daemon grew by ${((peak - before) / MiB).toFixed(0)} MiB for 20 clients`);
  t.same(await d.json('disk', 'list'), [], 'and serves others meanwhile');
});

t.test('many clients each sending part of a large frame hold the daemon to its frame budget', async (t) => {
  // Each started frame of 1 MiB was read as far as the client sent it: 200 such clients held about
  // 205 MiB for the 30 s frame deadline. Frames over 64 KiB now share one 64 MiB budget.
  const d = await freshDaemon(t);
  const clients = await Promise.all(Array.from({ length: 200 }, () => RawClient.ready(d.socketPath)));
  t.teardown(() => clients.forEach((c) => c.close()));
  const before = rssBytes(d.proc.pid!);
  const started = frame(encodeMessage({ id: 1, method: 'version', params: { pad: 'x'.repeat(1000 * 1000) } })).subarray(0, 990 * 1000);
  for (const c of clients) c.sendBytes(started);
  let peak = before;
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    await sleep(100);
    peak = Math.max(peak, rssBytes(d.proc.pid!));
  }
  t.ok(peak - before < 120 * MiB, `the daemon grew by ${((peak - before) / MiB).toFixed(0)} MiB for 200 started frames of 1 MB`);
  t.same(await d.json('disk', 'list'), [], 'and serves others meanwhile');
});

t.test('a client past --max-connections is told why', async (t) => {
  const d = await freshDaemon(t, ['--max-connections', '2']);
  const held = [await RawClient.ready(d.socketPath), await RawClient.ready(d.socketPath)];
  t.teardown(() => held.forEach((c) => c.close()));
  const r = await d.cli('disk', 'list');
  t.equal(r.code, 1);
  t.match(r.stderr, /the daemon serves at most 2 clients at once and all are connected; try again later \[DaemonUnavailable\]/);
  await d.waitForLog(/refusing connections: the client limit is reached/);
});

t.test('a user past --max-connections-per-user is told why, and an idle client is closed after --idle-timeout', async (t) => {
  const d = await freshDaemon(t, ['--max-connections-per-user', '2', '--idle-timeout', '3']);
  const held = [await RawClient.ready(d.socketPath), await RawClient.ready(d.socketPath)];
  t.teardown(() => held.forEach((c) => c.close()));
  // Busy until the CLI was refused: a loaded machine can take longer than the idle timeout to
  // start the CLI, and the held clients must still hold their slots when it connects.
  let id = 1;
  const busy = setInterval(() => held.forEach((c) => c.send({ id: id++, method: 'disk.list', params: {} })), 200);
  const r = await d.cli('disk', 'list').finally(() => clearInterval(busy));
  t.equal(r.code, 1);
  t.match(r.stderr, /at most 2 clients of one user at once and uid \d+ has that many connected.*\[DaemonUnavailable\]/);
  await d.waitForLog(/refusing connections: the client limit is reached \(--max-connections-per-user\)/);
  // Both held clients do nothing: the idle timeout gives their slots back.
  for (const c of held) await c.waitClosed(15_000);
  t.same(await d.json('disk', 'list'), [], 'served once the idle clients are gone');
});
