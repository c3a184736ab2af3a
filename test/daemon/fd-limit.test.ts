/**
 * The start warns when the open-file limit leaves no room for --max-connections clients beside
 * the block files volumes keep open: past it clients are dropped unanswered and nothing else is
 * logged.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { FD_RESERVE, fdLimitWarning, openFileLimit } from '../../src/daemon/fd-limit';
import { BIN, ensureBuilt, tempDir } from '../integration/fixtures/harness';

const limits = (soft: string): string =>
  'Limit                     Soft Limit           Hard Limit           Units     \n' +
  'Max processes             96367                96367                processes \n' +
  `Max open files            ${soft.padEnd(21)}524288               files     \n`;

t.test('the soft open-file limit is read from /proc/self/limits', async (t) => {
  t.equal(openFileLimit(limits('1024')), 1024);
  t.equal(openFileLimit(limits('unlimited')), null);
  t.equal(openFileLimit(''), null);
});

t.test('a limit below the clients plus the reserve is warned of, naming both and the ways out', async (t) => {
  const w = fdLimitWarning(1024, 1024);
  t.match(w, { limit: 1024, needed: 1707, message: /RLIMIT_NOFILE\) is 1024, below the 1707 that --max-connections 1024 needs.*LimitNOFILE=.*lower --max-connections/ });
});

t.test('a limit holding the clients and the reserve but not the quarter kept block files may take is warned of', async (t) => {
  t.match(fdLimitWarning(1024 + FD_RESERVE, 1024), { needed: 1707, message: /block files served volumes keep open \(a quarter of the limit\)/ });
});

t.test('a limit that leaves room for every client is not warned of', async (t) => {
  t.equal(fdLimitWarning(1707, 1024), null);
  t.equal(fdLimitWarning(null, 1024), null);
});

t.test('the daemon started under a low limit logs the warning', async (t) => {
  ensureBuilt();
  const dir = tempDir(t);
  mkdirSync(join(dir, 'img'));
  const p = spawn('sh', ['-c', 'ulimit -n 300 && exec "$0" "$@"', process.execPath, BIN, 'daemon', '--data-dir', join(dir, 'data'),
    '--socket', join(dir, 'd.sock'), '--image-root', join(dir, 'img'), '--max-connections', '100'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const seen = new Promise<void>((resolve) => p.stderr.on('data', (c: Buffer) => {
    err += c.toString();
    if (/"msg":"listening"/.test(err)) resolve();
  }));
  const exited = new Promise((r) => p.once('exit', r));
  await seen;
  p.kill('SIGTERM');
  await exited;
  t.match(err, /"limit":300,"needed":475,"msg":"the open-file limit \(RLIMIT_NOFILE\) is 300/);
});
