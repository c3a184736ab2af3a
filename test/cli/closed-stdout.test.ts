/**
 * `blocksnap ... | head -1`: the reader closes the pipe before the CLI has printed everything.
 * The CLI must end as any command-line tool does, quietly and with its command's status, not
 * with a stack trace for an unhandled EPIPE.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { BIN, ensureBuilt } from '../integration/fixtures/harness';

t.test('help printed into a pipe its reader has closed ends quietly with status 0', async (t) => {
  ensureBuilt();
  // head -c 0 exits at once; the CLI starts writing only after the sleep, into a closed pipe.
  const r = spawnSync('sh', ['-c', `{ sleep 0.3; node "$1" disk remove --help; echo "status=$?" >&2; } | head -c 0`, 'sh', BIN], { encoding: 'utf8' });
  t.equal(r.status, 0);
  t.match(r.stderr, /status=0\n$/, 'the CLI exits 0');
  t.notMatch(r.stderr, /EPIPE|Unhandled|at /, `no stack trace: ${r.stderr}`);
});
