/**
 * A clone the daemon was killed in the middle of must not be left under the name the operator
 * asked for: it would look like a finished image.
 */
import t from 'tap';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startDaemon, tempDir } from './fixtures/harness';

const MiB = 1024 * 1024;

interface JobLike { id: string; kind: string; state: string; doneBytes: number; target: string | null }

t.test('a clone cut short by SIGKILL leaves no file under its name, and the next start removes the partial one', async (t) => {
  const dir = tempDir(t);
  const imageRoot = join(dir, 'images');
  const o = { dataDir: join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock') };
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
  let job: JobLike | undefined;
  for (let i = 0; i < 2000; i++) {
    job = (await d.json<JobLike[]>('job', 'list')).find((j) => j.id === started.id);
    if (job && (job.doneBytes > 0 || job.state !== 'running')) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  t.equal(job?.state, 'running', 'the clone was under way when the daemon was killed');
  d.proc.kill('SIGKILL');
  await d.exited;
  t.notOk(existsSync(target), 'nothing under the name asked for');
  t.ok(existsSync(join(imageRoot, `.blocksnap-${started.id}.partial`)), 'the partial file is what the crash left');

  const again = await startDaemon(t, o);
  await again.waitForLog(/recovered from an unclean stop/);
  t.match(again.stderr(), /"partialFiles":1/);
  t.same(readdirSync(imageRoot), ['vm.img'], 'the partial file is gone');
  t.match((await again.json<JobLike[]>('job', 'list')).find((j) => j.id === started.id), { state: 'interrupted' });
  t.match(await again.json('clone', 'base', target), { path: target }, 'the same clone runs again');
  t.same(readdirSync(imageRoot).sort(), ['copy.img', 'vm.img']);
});
