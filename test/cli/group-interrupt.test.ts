/**
 * Ctrl-C on the commands that start several jobs and wait for them (group create, group rollback,
 * policy run): like `snapshot create` or `rollback`, they cancel what they started and say so,
 * or leave it running with --detach-on-interrupt; never exit while the jobs go on unsaid.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { BIN, CLI_START_MS, freshDaemon, type Daemon } from '../integration/fixtures/harness';
import { MiB, makeImage } from '../integration/fixtures/images';

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
interface JobView { id: string; kind: string; state: string; diskId: string }

const SIZE = 512 * MiB;
const BLOCKS = Array.from({ length: 128 }, (_, i) => i);

/** Two raw disks full of data: their jobs run long enough for Ctrl-C to land mid-way. */
async function twoDisks(d: Daemon): Promise<void> {
  for (const n of ['a', 'b']) {
    makeImage(join(d.imageRoot, `${n}.img`), SIZE, BLOCKS);
    await d.json('disk', 'add', `${n}.img`, '--name', n);
  }
}

/** A daemon with group g1 of disks a and b, whose images then got new content everywhere. */
async function groupToRollBack(t: Test): Promise<Daemon> {
  const d = await freshDaemon(t);
  await twoDisks(d);
  await d.json('group', 'create', 'a', 'b', '--name', 'g1');
  // Every block to write back: the rollback runs long enough for Ctrl-C to land mid-way.
  for (const n of ['a', 'b']) {
    rmSync(join(d.imageRoot, `${n}.img`));
    makeImage(join(d.imageRoot, `${n}.img`), SIZE, BLOCKS);
  }
  return d;
}

/** Resolves once `count` jobs of `kind` run, then sends SIGINT to the CLI. */
async function interruptWhenRunning(d: Daemon, args: string[], kind: string, count: number): Promise<Run> {
  const p = spawn(process.execPath, [BIN, ...args], { cwd: d.imageRoot, env: { ...process.env, BLOCKSNAP_SOCKET: d.socketPath } });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const ended = new Promise<Run>((resolve, reject) => {
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  // Asked straight over the socket: a CLI run per look would be slower than a snapshot of these disks.
  // A SIGINT sent before the CLI started its jobs would find no handler and tell nothing: never
  // interrupt early.
  const c = await DaemonClient.connect({ socketPath: d.socketPath });
  try {
    for (const until = Date.now() + CLI_START_MS; ;) {
      const jobs = await c.call<JobView[]>('job.list', {});
      if (jobs.filter((j) => j.kind === kind && j.state === 'running').length >= count) break;
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`the CLI exited before ${count} ${kind} jobs ran:\n${stderr}`);
      if (Date.now() > until) throw new Error(`${count} ${kind} jobs did not run within ${CLI_START_MS / 1000} s:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  } catch (err) {
    p.kill('SIGKILL');
    throw err;
  } finally {
    c.close();
  }
  p.kill('SIGINT');
  return ended;
}

async function jobsOf(d: Daemon, kind: string): Promise<JobView[]> {
  return (await d.json<JobView[]>('job', 'list')).filter((j) => j.kind === kind);
}

/** Waits for every job of `kind` to end, and returns them. */
async function settled(d: Daemon, kind: string): Promise<JobView[]> {
  for (;;) {
    const jobs = await jobsOf(d, kind);
    if (jobs.every((j) => j.state !== 'running')) return jobs;
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('Ctrl-C on group rollback cancels every member rollback and says what each disk was left in', async (t) => {
  const d = await groupToRollBack(t);
  const run = await interruptWhenRunning(d, ['group', 'rollback', 'g1'], 'rollback', 2);
  t.equal(run.code, 130, run.stderr);
  t.match(run.stderr, /Cancelling group rollback g1 \(jobs j-[0-9a-f]{16}, j-[0-9a-f]{16}\)/);
  t.match(run.stderr, /blocksnap: group rollback g1 was cancelled:\n  a: rollback \w+ \(job j-[0-9a-f]{16}\); .+\n  b: rollback \w+/);
  t.same((await jobsOf(d, 'rollback')).map((j) => j.state).filter((s) => s === 'running'), [], 'no rollback runs on');
  t.ok((await jobsOf(d, 'rollback')).some((j) => j.state === 'cancelled'), 'a member rollback was cancelled');
  // What the message says of each disk is what the daemon reports.
  for (const n of ['a', 'b']) {
    const disk = await d.json<{ pendingRollback: unknown }>('disk', 'show', n);
    const line = new RegExp(`\\n  ${n}: rollback (\\w+)[^\\n]*; ([^\\n]+)`).exec(run.stderr);
    if (!t.ok(line, `the message has a line for ${n}`) || line === null) continue;
    if (line[1] === 'succeeded') t.match(line[2], /^rolled back/, n);
    else if (disk.pendingRollback === null) t.equal(line[2], 'left as it was', n);
    else t.match(line[2], new RegExp(`^partly rolled back: .*blocksnap rollback ${n} --abandon`), n);
  }
});

t.test('Ctrl-C on group create cancels the member snapshots and the group reads error', async (t) => {
  const d = await freshDaemon(t);
  await twoDisks(d);
  const run = await interruptWhenRunning(d, ['group', 'create', 'a', 'b', '--name', 'g1'], 'snapshot', 2);
  t.equal(run.code, 130, run.stderr);
  t.match(run.stderr, /Cancelling group snapshot of a, b \(jobs j-[0-9a-f]{16}, j-[0-9a-f]{16}\)/);
  t.match(run.stderr, /blocksnap: group g1 \(g-[0-9a-f]{16}\) was cancelled .*its partial members were removed; the disks were not touched\. The group's error: .*\n$/);
  t.same((await jobsOf(d, 'snapshot')).map((j) => j.state), ['cancelled', 'cancelled']);
  t.match(await d.json('group', 'show', 'g1'), { status: 'error', error: { code: 'Cancelled' }, snapshotIds: [] });
});

t.test('Ctrl-C on policy run cancels its snapshots and says so, in JSON too', async (t) => {
  const d = await freshDaemon(t);
  await twoDisks(d);
  await d.json('policy', 'create', '--name', 'p1', '--hours', '3', '--disabled');
  await d.json('policy', 'bind', 'p1', 'a', 'b');
  const run = await interruptWhenRunning(d, ['policy', 'run', 'p1', '--json'], 'snapshot', 2);
  t.equal(run.code, 130, run.stderr);
  t.match(JSON.parse(run.stdout), { error: { code: 'Cancelled', message: /^policy run p1 was cancelled/ } });
  t.same((await jobsOf(d, 'snapshot')).map((j) => j.state), ['cancelled', 'cancelled']);
});

t.test('Ctrl-C on group rollback with --detach-on-interrupt leaves the rollbacks running', async (t) => {
  const d = await groupToRollBack(t);
  const run = await interruptWhenRunning(d, ['group', 'rollback', 'g1', '--detach-on-interrupt'], 'rollback', 2);
  t.equal(run.code, 130, run.stderr);
  t.match(run.stderr, /^blocksnap: detached from group rollback g1; jobs j-[0-9a-f]{16}, j-[0-9a-f]{16} keep running in the daemon; see: blocksnap job list\n$/);
  t.same((await settled(d, 'rollback')).map((j) => j.state), ['succeeded', 'succeeded'], 'the rollbacks ran to their end');
});
