/**
 * `blocksnap ... > /dev/full`: stdout fails with ENOSPC. Unlike a reader that stopped early
 * (closed-stdout.test.ts), the output was wanted: the CLI says it could not write it and exits 1,
 * never with a stack trace. A stream to stdout (`snapshot export -o -`) reports StreamClosed, as
 * docs/errors.md says, with --json as the error object on stderr.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BIN, ensureBuilt, freshDaemon } from '../integration/fixtures/harness';
import { MiB, makeImage } from '../integration/fixtures/images';

function toFull(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stderr: string } {
  const r = spawnSync('sh', ['-c', 'node "$@" > /dev/full', 'sh', BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stderr: r.stderr };
}

t.test('help written to a full disk says so and exits 1', async (t) => {
  ensureBuilt();
  const r = toFull(['disk', 'remove', '--help']);
  t.equal(r.status, 1);
  t.equal(r.stderr, 'blocksnap: cannot write the output: ENOSPC [IOError]\n');
});

t.test('a daemon\'s answer written to a full disk says so, as the error object on stderr with --json', async (t) => {
  const d = await freshDaemon(t);
  const env = { BLOCKSNAP_SOCKET: d.socketPath };
  const human = toFull(['disk', 'list'], env);
  t.equal(human.status, 1);
  t.equal(human.stderr, 'blocksnap: cannot write the output: ENOSPC [IOError]\n');
  const json = toFull(['disk', 'list', '--json'], env);
  t.equal(json.status, 1);
  t.same(JSON.parse(json.stderr), { error: { code: 'IOError', message: 'cannot write the output: ENOSPC' } });

  makeImage(join(d.imageRoot, 'vm.img'), 16 * MiB, [0, 1, 2]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  await d.json('snapshot', 'create', 'vm', '--name', 's1');
  const stream = toFull(['snapshot', 'export', 's1', '-o', '-', '--json'], env);
  t.equal(stream.status, 1);
  t.notMatch(stream.stderr, /\n\s+at /, 'no stack trace');
  const last = stream.stderr.trimEnd().split('\n').pop() ?? '';
  t.match(JSON.parse(last), { error: { code: 'StreamClosed', message: /cannot write the stream: ENOSPC/ } });
});
