/**
 * A waiting CLI ended by a signal other than Ctrl-C: SIGTERM (timeout(1), systemd, kill) is
 * answered as Ctrl-C without a terminal: the job is cancelled, or left running with
 * --detach-on-interrupt. SIGHUP (the terminal went away) detaches. Either way the CLI says which
 * and exits 128 + the signal's number, where it used to die silently with the job running on.
 * A wait cut off by a lost connection names the job.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { FrameDecoder, frame } from '../../src/daemon/protocol/frame';
import { decodeMessage, encodeMessage, PROTOCOL_VERSION } from '../../src/daemon/protocol/messages';
import { BIN, CLI_START_MS, ensureBuilt, tempDir } from '../integration/fixtures/harness';
import { startFakeDaemon, type FakeDaemon } from '../daemon/fixtures/fake-daemon';
import { waitFor } from '../daemon/fixtures/wait-for';
import { PtyRun } from '../helpers/pty';

interface Run { code: number | null; stdout: string; stderr: string }

/** `blocksnap snapshot create a` against `socket`; `signal` is sent once `ready()` says the job runs. */
async function signalled(socket: string, extra: string[], ready: () => boolean, signal: NodeJS.Signals | null): Promise<Run> {
  ensureBuilt();
  const p = spawn(process.execPath, [BIN, 'snapshot', 'create', 'a', '--socket', socket, ...extra]);
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const ended = new Promise<Run>((resolve, reject) => {
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  await waitFor('the job to start', ready, CLI_START_MS);
  if (signal !== null) p.kill(signal);
  return ended;
}

async function daemonWithDisk(t: Test): Promise<FakeDaemon> {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  return d;
}

const started = (d: FakeDaemon) => (): boolean => d.engine.listJobs().length > 0;

t.test('SIGTERM cancels the job, says so and exits 143', async (t) => {
  const d = await daemonWithDisk(t);
  const r = await signalled(d.socketPath, [], started(d), 'SIGTERM');
  const job = d.engine.lastJobId;
  t.equal(r.code, 143, r.stderr);
  t.equal(d.engine.getJob(job).state, 'cancelled');
  t.match(r.stderr, `Cancelling job ${job} on SIGTERM`);
  t.match(r.stderr, `blocksnap: job ${job} was cancelled on SIGTERM\n`);
});

t.test('SIGTERM with --detach-on-interrupt leaves the job running, says so and exits 143; --json prints the job', async (t) => {
  const d = await daemonWithDisk(t);
  const r = await signalled(d.socketPath, ['--detach-on-interrupt'], started(d), 'SIGTERM');
  const job = d.engine.lastJobId;
  t.equal(r.code, 143, r.stderr);
  t.equal(d.engine.getJob(job).state, 'running');
  t.match(r.stderr, `blocksnap: detached from job ${job} on SIGTERM; it keeps running in the daemon`);
  const before = d.engine.listJobs().length;
  const json = await signalled(d.socketPath, ['--detach-on-interrupt', '--json'], () => d.engine.listJobs().length > before, 'SIGTERM');
  t.equal(json.code, 143, json.stderr);
  t.match(JSON.parse(json.stdout), { id: d.engine.lastJobId, state: 'running' });
});

t.test('SIGHUP detaches, leaving the job running, and exits 129', async (t) => {
  const d = await daemonWithDisk(t);
  const r = await signalled(d.socketPath, [], started(d), 'SIGHUP');
  const job = d.engine.lastJobId;
  t.equal(r.code, 129, r.stderr);
  t.equal(d.engine.getJob(job).state, 'running');
  t.match(r.stderr, `blocksnap: detached from job ${job} on SIGHUP; it keeps running in the daemon`);
});

t.test('SIGTERM on a terminal asks nothing: it cancels, even with the Ctrl-C question open', async (t) => {
  ensureBuilt();
  const d = await daemonWithDisk(t);
  const run = new PtyRun([process.execPath, BIN, 'snapshot', 'create', 'a', '--socket', d.socketPath]);
  t.teardown(() => run.kill());
  await waitFor('the job to start', started(d), CLI_START_MS);
  run.type('\x03');
  await run.until('the question', (o) => o.includes('or keep [w]aiting? [w] '));
  run.signal('SIGTERM');
  t.equal(await run.exited, 143, run.output);
  t.equal(d.engine.getJob(d.engine.lastJobId).state, 'cancelled');
  t.match(run.output, /was cancelled on SIGTERM/);
});

/**
 * A daemon that starts the job and stops while it is waited for: answers hello and snapshot.create,
 * then, on job.wait, drops the connection ('dies') or answers ShuttingDown ('stops': the wait
 * arrived after its shutdown began).
 */
function dyingDaemon(t: Test, how: 'dies' | 'stops' = 'dies'): { socket: string; waited: () => boolean } {
  const socket = join(tempDir(t), 'd.sock');
  let waited = false;
  const job = {
    id: 'j-00000000000000aa', kind: 'snapshot', state: 'running', diskId: 'd-0000000000000001', snapshotId: null, target: null,
    doneBytes: 0, totalBytes: 0, progressUnit: 'bytes', startedAt: new Date().toISOString(), finishedAt: null, result: null, error: null,
  };
  const server: Server = createServer((s) => {
    const decoder = new FrameDecoder();
    s.on('data', (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        const m = decodeMessage(p) as { id: number; method: string };
        if (m.method === 'hello') s.write(frame(encodeMessage({ id: m.id, result: { protocol: PROTOCOL_VERSION, version: '0.0.0-test', pid: process.pid } })));
        else if (m.method === 'snapshot.create') s.write(frame(encodeMessage({ id: m.id, result: job })));
        else if (m.method === 'job.wait') {
          waited = true;
          if (how === 'dies') s.destroy();
          else s.write(frame(encodeMessage({ id: m.id, error: { code: 'ShuttingDown', message: 'the daemon is shutting down' } })));
        }
      }
    });
    s.on('error', () => undefined);
  });
  server.listen(socket);
  t.teardown(() => server.close());
  return { socket, waited: () => waited };
}

t.test('a wait cut off by a lost connection names the job', async (t) => {
  const d = dyingDaemon(t);
  const r = await signalled(d.socket, [], d.waited, null);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stderr, /closed the connection while waiting for job j-00000000000000aa; once the daemon answers, see: blocksnap job show j-00000000000000aa \[DaemonUnavailable\]\n$/);
});

t.test('a wait the daemon refuses as it shuts down names the job it cancels', async (t) => {
  const d = dyingDaemon(t, 'stops');
  const r = await signalled(d.socket, [], d.waited, null);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stderr, /the daemon is shutting down and cancels the jobs still running at a safe point; once it is back, see what became of job j-00000000000000aa: blocksnap job show j-00000000000000aa \[ShuttingDown\]\n$/);
});
