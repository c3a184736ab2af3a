/**
 * A daemon out of file descriptors says so in its log, naming its limit and what to raise: the
 * clients libuv dropped at accept, the failed jobs and NBD reads left nothing there that named it.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { FdExhaustionLog, warningText } from '../../src/daemon/fd-exhaustion-log';
import { BlocksnapError } from '../../src/errors';
import { fdExhaustionOf, reportFdExhaustion } from '../../src/fd-exhaustion';
import { BIN, ensureBuilt, tempDir } from '../integration/fixtures/harness';

function capturingLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'warn' }, sink), lines };
}

t.test('EMFILE and ENFILE are recognised from Node errors, the addon\'s errno and messages', async (t) => {
  t.equal(fdExhaustionOf(Object.assign(new Error('EMFILE: too many open files, open \'/x\''), { code: 'EMFILE', errno: -24 })), 'EMFILE');
  t.equal(fdExhaustionOf(new BlocksnapError('IOError', 'open /data/blocks/ab/cd: Too many open files', { errno: 24, syscall: 'open' })), 'EMFILE');
  t.equal(fdExhaustionOf(new BlocksnapError('IOError', 'open: Too many open files in system', { errno: 23 })), 'ENFILE');
  t.equal(fdExhaustionOf(new BlocksnapError('IOError', 'read failed: EIO', { errno: 5 })), null);
  t.equal(fdExhaustionOf(Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT', errno: -2 })), null);
  t.equal(fdExhaustionOf('EMFILE'), null, 'only errors');
});

t.test('a shortage reported is logged once with the limit, the count open and the ways out', async (t) => {
  const { log, lines } = capturingLog();
  const stop = new FdExhaustionLog(log).start(3_600_000);
  t.teardown(stop);
  reportFdExhaustion(new BlocksnapError('IOError', 'open /d/blocks/ab/cd: Too many open files', { errno: 24, syscall: 'open', path: '/d/blocks/ab/cd' }));
  reportFdExhaustion(Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }));
  t.equal(lines.length, 1, 'the second within the gap is not logged');
  t.match(lines[0], { level: 40, errno: 'EMFILE', where: 'open /d/blocks/ab/cd', limit: Number, open: Number,
    msg: /ran out of file descriptors \(EMFILE at open \/d\/blocks\/ab\/cd\).*limit \(RLIMIT_NOFILE\) is \d+.*LimitNOFILE=.*ulimit -n/ });
});

t.test('the next warning after the gap counts the shortages it held back', async (t) => {
  const { log, lines } = capturingLog();
  let now = 1_000_000;
  const watch = new FdExhaustionLog(log, 60_000, () => now);
  watch.note('EMFILE', undefined);
  now += 59_999;
  watch.note('EMFILE', undefined);
  watch.note('EMFILE', undefined);
  now += 1;
  watch.note('EMFILE', undefined);
  t.equal(lines.length, 2);
  t.equal(lines[0]!.suppressed, undefined);
  t.equal(lines[1]!.suppressed, 2);
});

t.test('ENFILE points at the system\'s table, not the daemon\'s limit', async (t) => {
  t.match(warningText('ENFILE', undefined, 10, 1024), /system's open-file table is full \(ENFILE\).*fs\.file-max/);
});

t.test('a daemon whose clients used up its descriptors logs the warning naming its limit', async (t) => {
  ensureBuilt();
  const dir = tempDir(t);
  mkdirSync(join(dir, 'img'));
  const socket = join(dir, 'd.sock');
  const limit = 96;
  // Soft and hard alike (sh sets both): Node raises a soft limit to the hard one at start.
  const p = spawn('sh', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, BIN, 'daemon', '--data-dir', join(dir, 'data'),
    '--socket', socket, '--image-root', join(dir, 'img')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise((r) => p.once('exit', r));
  const clients: Socket[] = [];
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    if (p.exitCode === null) p.kill('SIGKILL');
    await exited;
  });
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + 60_000;
    while (!cond()) {
      if (Date.now() > end || p.exitCode !== null) throw new Error(`no ${what}:\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await until(() => /"msg":"listening"/.test(err), 'listening');
  t.notMatch(err, /ran out of file descriptors/, 'nothing to say before the clients come');
  // More clients than the daemon has descriptors: the last ones are accepted and closed by libuv.
  for (let i = 0; i < limit + 16; i++) {
    const c = connect(socket);
    c.on('error', () => undefined);
    clients.push(c);
  }
  await until(() => /ran out of file descriptors/.test(err), 'warning');
  const line = err.split('\n').find((l) => /ran out of file descriptors/.test(l))!;
  const warning = JSON.parse(line) as Record<string, unknown>;
  t.match(warning, { level: 'warn', errno: 'EMFILE', limit, msg: new RegExp(`limit \\(RLIMIT_NOFILE\\) is ${limit}.*LimitNOFILE=.*ulimit -n`) });
  t.ok(typeof warning.open === 'number' && warning.open > limit / 2, `descriptors open: ${String(warning.open)}`);
});
