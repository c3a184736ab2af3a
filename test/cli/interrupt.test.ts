/**
 * Ctrl-C on `snapshot export -o -`: stdout carries the stream, so how the wait ended is reported on
 * stderr, in the same words (or JSON) as any other interrupted command, with exit status 130.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { BIN, freshDaemon, type Daemon } from '../integration/fixtures/harness';
import { MiB, makeImage } from '../integration/fixtures/images';

interface Run { code: number | null; stderr: string; streamBytes: number }

/** Runs an export to stdout and sends SIGINT once its first bytes arrive; stdout is drained after. */
function interruptedExport(d: Daemon, extra: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, 'snapshot', 'export', 'base', '-o', '-', ...extra],
      { cwd: d.imageRoot, env: { ...process.env, BLOCKSNAP_SOCKET: d.socketPath } });
    let stderr = '';
    let streamBytes = 0;
    p.stdout.on('data', (c: Buffer) => {
      if (streamBytes === 0) {
        // Not read for a moment: the export cannot run to its end before the cancel lands, the
        // pipe and the stream's credit holding a few MiB of its 256.
        p.stdout.pause();
        p.kill('SIGINT');
        setTimeout(() => p.stdout.resume(), 300);
      }
      streamBytes += c.length;
    });
    p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stderr, streamBytes }));
  });
}

t.test('Ctrl-C on export -o - says the job was cancelled and exits 130', async (t) => {
  const d = await freshDaemon(t);
  // Large enough that the export is still streaming when the cancel arrives.
  makeImage(join(d.imageRoot, 'vm.img'), 256 * MiB, Array.from({ length: 64 }, (_, i) => i));
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  await d.json('snapshot', 'create', 'vm', '--name', 'base');

  const human = await interruptedExport(d, []);
  t.equal(human.code, 130, human.stderr);
  t.ok(human.streamBytes > 0, 'the stream had started');
  t.match(human.stderr, /\nblocksnap: job j-[0-9a-f]{16} was cancelled\n$/);

  const json = await interruptedExport(d, ['--json']);
  t.equal(json.code, 130, json.stderr);
  const last = json.stderr.trimEnd().split('\n').pop() ?? '';
  t.match(JSON.parse(last), { error: { code: 'Cancelled', message: /was cancelled/ } }, 'the error object, on stderr');

  const jobs = await d.json<Array<{ kind: string; state: string }>>('job', 'list');
  t.same(jobs.filter((j) => j.kind === 'export').map((j) => j.state), ['cancelled', 'cancelled'], 'both exports were cancelled');
});
