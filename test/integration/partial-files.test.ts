/**
 * A clone the daemon was killed in the middle of must not be left under the name the operator
 * asked for: it would look like a finished image. Nor under any other: its file has no name
 * until it is complete, except on filesystems without O_TMPFILE, where the start removes it.
 */
import t, { type Test } from 'tap';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DaemonClient } from '../../src/daemon/client';
import { startDaemon, tempDir } from './fixtures/harness';

const MiB = 1024 * 1024;

interface JobLike { id: string; kind: string; state: string; doneBytes: number; target: string | null }

/** A daemon, a 1 GiB disk with a snapshot, and its clone to `copy.img` under way (data being written). */
async function cloneUnderWay(t: Test, env: NodeJS.ProcessEnv) {
  const dir = tempDir(t);
  const imageRoot = join(dir, 'images');
  const o = { dataDir: join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock'), env };
  mkdirSync(imageRoot);
  // Big enough that the clone is still writing when it is killed: 1 GiB of data.
  const img = join(imageRoot, 'vm.img');
  const fd = openSync(img, 'w', 0o600);
  const chunk = randomBytes(4 * MiB);
  for (let i = 0; i < 256; i++) { chunk.writeUInt32LE(i, 0); writeSync(fd, chunk, 0, chunk.length, i * chunk.length); }
  closeSync(fd);
  const d = await startDaemon(t, o);
  await d.json('disk', 'add', img, '--name', 'vm');
  await d.json('snapshot', 'create', 'vm', '--name', 'base');
  const target = join(imageRoot, 'copy.img');
  const started = await d.json<JobLike>('clone', 'base', target, '--no-wait');
  // Asked over a connection of the test's own, and the daemon stopped (SIGSTOP) the moment it
  // answers "running": a CLI process per question left time for the clone to finish on a loaded
  // machine, and its renamed file to be taken for a partial one.
  const client = await DaemonClient.connect({ socketPath: o.socketPath });
  let job: JobLike | undefined;
  try {
    for (let i = 0; i < 20_000; i++) {
      job = await client.call<JobLike>('job.show', { job: started.id });
      if (job.doneBytes > 0 || job.state !== 'running') break;
      await new Promise((r) => setTimeout(r, 1));
    }
    if (job?.state === 'running') d.proc.kill('SIGSTOP');
  } finally {
    client.close();
  }
  t.equal(job?.state, 'running', 'the clone was under way when the daemon was stopped, then killed');
  return { d, o, imageRoot, target, jobId: started.id };
}

t.test('a clone cut short by SIGKILL leaves nothing: its file had no name yet', async (t) => {
  const { d, o, imageRoot, target, jobId } = await cloneUnderWay(t, {});
  t.same(readdirSync(imageRoot), ['vm.img'], 'while the clone writes, its directory lists nothing new');
  d.proc.kill('SIGKILL');
  await d.exited;
  t.notOk(existsSync(target), 'nothing under the name asked for');
  t.same(readdirSync(imageRoot), ['vm.img'], 'nor under any other');

  const again = await startDaemon(t, o);
  await again.waitForLog(/recovered from an unclean stop/);
  t.match(again.stderr(), /"partialFiles":0/, 'no partial file for the start to remove');
  t.match((await again.json<JobLike[]>('job', 'list')).find((j) => j.id === jobId), { state: 'interrupted' });
  t.match(await again.json('clone', 'base', target), { path: target }, 'the same clone runs again');
  t.same(readdirSync(imageRoot).sort(), ['copy.img', 'vm.img']);
});

t.test('without O_TMPFILE, a clone cut short by SIGKILL leaves its partial file, and the next start removes it', async (t) => {
  const env = { BLOCKSNAP_NO_TMPFILE: '1' };
  const { d, o, imageRoot, target, jobId } = await cloneUnderWay(t, env);
  d.proc.kill('SIGKILL');
  await d.exited;
  t.notOk(existsSync(target), 'nothing under the name asked for');
  t.ok(existsSync(join(imageRoot, `.blocksnap-${jobId}.partial`)), 'the partial file is what the crash left');

  const again = await startDaemon(t, o);
  await again.waitForLog(/recovered from an unclean stop/);
  t.match(again.stderr(), /"partialFiles":1/);
  t.same(readdirSync(imageRoot), ['vm.img'], 'the partial file is gone');
  t.match((await again.json<JobLike[]>('job', 'list')).find((j) => j.id === jobId), { state: 'interrupted' });
  t.match(await again.json('clone', 'base', target), { path: target }, 'the same clone runs again');
  t.same(readdirSync(imageRoot).sort(), ['copy.img', 'vm.img']);
});
