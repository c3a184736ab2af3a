/**
 * The rollback command's own CLI: `--abandon` and what Ctrl-C warns of. Cancelling a raw
 * rollback once it writes leaves the image partly rolled back and the disk refusing snapshots
 * (before, the disk as it was), and the question
 * Ctrl-C asks on a terminal must say so before the operator answers; cancelling a qcow2 one
 * leaves the disk as it was.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import t, { type Test } from 'tap';
import { buildProgram } from '../../src/cli/main';
import { interruptQuestion } from '../../src/cli/follow';
import { rollbackCancelNote } from '../../src/cli/commands/rollback';
import type { Disk, Job } from '../../src/engine/types';
import { DaemonProcess, connect, makeLayout, sleep } from '../crash/daemon-process';
import { BIN, CLI_START_MS, ensureBuilt, runCli } from '../integration/fixtures/harness';
import { makeImage, randomData, writeAt } from '../helpers/images';
import { startFakeDaemon } from '../daemon/fixtures/fake-daemon';
import { waitFor as until } from '../daemon/fixtures/wait-for';

function helpOf(name: string): string {
  const cmd = buildProgram().commands.find((c: Command) => c.name() === name)!;
  let help = '';
  cmd.configureOutput({ writeOut: (s) => (help += s) });
  cmd.outputHelp();
  return help.replace(/\s+/g, ' ');
}

t.test('rollback help explains --abandon and what an unfinished rollback leaves', async (t) => {
  const help = helpOf('rollback');
  t.match(help, /--abandon clear the journal of an unfinished rollback without finishing it/);
  t.match(help, /\[snapshot\]/, 'the snapshot may be left out (with --abandon)');
  t.match(help, /leaves it partly\s+rolled back, and the disk refuses snapshots/);
  t.match(help, /a damaged or missing block in the store, or a cancel or a crash before the writing began, leaves\s+the disk as it was/);
  t.match(help, /A cancelled rollback says which\./);
  t.match(help, /possibly a mix of blocks from before and from the snapshot/);
  t.match(help, /refused with NoSpace before it starts/);
});

t.test('rollback --abandon refuses options that would not act, before connecting', async (t) => {
  ensureBuilt();
  const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];
  for (const extra of [['--force'], ['--no-wait'], ['--detach-on-interrupt']]) {
    const r = await runCli(['rollback', 'vm', '--abandon', ...extra, ...socket]);
    t.equal(r.code, 2, `--abandon ${extra.join(' ')} exits 2`);
    t.match(r.json(), { error: { code: 'InvalidArgument', message: new RegExp(`takes no ${extra[0]}`) } });
  }
  const missing = await runCli(['rollback', 'vm', ...socket]);
  t.match(missing.json(), { error: { code: 'InvalidArgument', message: /needs a SNAPSHOT/ } }, 'without --abandon the snapshot is required');
  const accepted = await runCli(['rollback', 'vm', '--abandon', ...socket]);
  t.match(accepted.json(), { error: { code: 'DaemonUnavailable' } }, 'the valid form goes on to the daemon');
});

t.test('the Ctrl-C question carries what cancelling leaves', async (t) => {
  const raw = rollbackCancelNote({ name: 'web1', format: 'raw' })!;
  t.match(raw, /partly rolled back/);
  t.match(raw, /before that, while it compares the image and checks the stored blocks, the disk is left as it was/);
  t.match(raw, /refusing snapshots until a rollback of it completes or is abandoned \(blocksnap rollback web1 --abandon\)/);
  t.match(rollbackCancelNote({ name: 'web1', format: 'qcow2' }), /leaves web1 as it was/);
  t.equal(rollbackCancelNote({ name: 'web1', format: 'cow' }), null, 'a copy-on-write rollback is instant: nothing to warn of');
  const q = interruptQuestion('j-0000000000000001', raw);
  t.match(q, /Job j-0000000000000001 is still running\.\n.*partly rolled back.*\n\[c\]ancel it/s);
  t.equal(interruptQuestion('j-0000000000000001'), '\nJob j-0000000000000001 is still running. [c]ancel it, [d]etach and leave it running, or keep [w]aiting? [w] ');
});

t.test('Ctrl-C on a raw rollback at a terminal warns before cancelling', { skip: spawnSync('script', ['--version']).status === 0 ? false : 'needs script(1) for a terminal' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // One thread: the rollback runs long enough to be interrupted.
  const layout = makeLayout(dir, { threads: 1 });
  const image = join(layout.imageRoot, 'vm.img');
  const size = 512 * 1024 * 1024;
  makeImage(image, size);
  const chunk = 8 * 1024 * 1024;
  for (let off = 0; off < size; off += chunk) writeAt(image, off, randomData(chunk));
  const daemon = await DaemonProcess.start(layout);
  t.teardown(() => daemon.kill());
  const c = await connect(layout);
  t.teardown(() => c.close());
  await c.call('disk.add', { path: image, name: 'vm' });
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true })).state, 'succeeded');
  for (let off = 0; off < size; off += chunk) writeAt(image, off, randomData(chunk));

  ensureBuilt();
  const command = `${process.execPath} ${BIN} rollback vm base --socket ${layout.socketPath}`;
  const p = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, COLUMNS: '120' } });
  let out = '';
  p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  const waitFor = async (re: RegExp, what: string): Promise<boolean> => {
    for (let i = 0; i < 3000 && !re.test(out); i++) await sleep(10);
    if (!re.test(out)) t.fail(`never saw ${what}: ${JSON.stringify(out.slice(-2000))}`);
    return re.test(out);
  };
  if (!(await waitFor(/rollback vm \[/, 'the progress bar'))) return;
  // Frozen, the daemon cannot finish the rollback while the question is asked.
  process.kill(daemon.pid, 'SIGSTOP');
  p.stdin.write('\x03');
  const asked = await waitFor(/\[c\]ancel it/, 'the question');
  process.kill(daemon.pid, 'SIGCONT');
  if (!asked) return;
  const question = out.slice(out.lastIndexOf('is still running')).replace(/\r/g, '');
  t.match(question, /cancelling leaves the image of vm partly rolled back/, 'the question warns of a partly rolled back image');
  t.match(question, /blocksnap rollback vm --abandon/, 'and names --abandon');
  p.stdin.write('c\r');
  t.equal(await exited, 130, 'cancelled: exit 130');
  // Where the cancel landed decides what is left, and the job's error says which.
  const pending = (await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback;
  const job = (await c.call<Job[]>('job.list')).find((j) => j.kind === 'rollback')!;
  t.equal(job.state, 'cancelled');
  if (/stopped before it wrote anything/.test(job.error?.message ?? '')) t.equal(pending, null, 'cancelled before it wrote: nothing journaled, as warned');
  else t.match(pending, { snapshotId: /^s-/ }, 'cancelled while it wrote: the raw rollback stays journaled, as warned');
  t.match(out.replace(/\r/g, ''), `job ${job.id} was cancelled. ${job.error?.message.replace(/^the job was cancelled\. /, '') ?? ''}`, 'and the CLI said which');
});

/** `blocksnap rollback a base` against a stand-in daemon whose cancelled jobs end with `message`, interrupted once it runs. */
async function cancelledRollback(t: Test, message: string, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; job: string }> {
  const d = await startFakeDaemon();
  t.teardown(() => d.stop());
  await d.engine.addDisk({ path: '/fake/images/a.img', name: 'a' });
  d.engine.cancelError = { code: 'Cancelled', message };
  ensureBuilt();
  const p = spawn(process.execPath, [BIN, 'rollback', 'a', 'base', '--socket', d.socketPath, ...extra]);
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const ended = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  await until('the rollback to start', () => d.engine.listJobs().length > 0, CLI_START_MS);
  p.kill('SIGINT');
  return { code: await ended, stdout, stderr, job: d.engine.lastJobId };
}

t.test('a cancelled rollback says what it left the disk in', async (t) => {
  const r = await cancelledRollback(t, 'the job was cancelled. The rollback of disk a to base stopped before it wrote anything: the disk is as it was and takes snapshots as before.');
  t.equal(r.code, 130, 'exit 130, as for any Ctrl-C');
  t.match(r.stderr, `blocksnap: job ${r.job} was cancelled. The rollback of disk a to base stopped before it wrote anything: the disk is as it was and takes snapshots as before.\n`);
});

t.test('a cancelled rollback says what it left the disk in, in JSON too', async (t) => {
  const r = await cancelledRollback(t, 'the job was cancelled. The rollback of disk a to base stopped partway and its image is partly rolled back: rerun it', ['--json']);
  t.equal(r.code, 130);
  t.match(JSON.parse(r.stdout), { error: { code: 'Cancelled', message: `job ${r.job} was cancelled. The rollback of disk a to base stopped partway and its image is partly rolled back: rerun it` } });
});
