/**
 * remote.add hands the daemon's rights to a file the client names (the credentials file, read and
 * used to sign requests to an endpoint the client chooses), so only root and the daemon's own
 * user may call it. Anyone else let in on the socket is refused before the file is looked at,
 * with one answer whatever the file is. The second test runs a real client as `nobody` in the
 * socket's group (setpriv); it skips, saying so, where the machine cannot switch users.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { lookupMethod, type CallContext } from '../../src/daemon/methods';
import { StreamChannels } from '../../src/daemon/stream-channels';
import { DaemonProcess, makeLayout } from '../crash/daemon-process';
import { BIN } from '../integration/fixtures/harness';
import { openSmallEngine } from '../helpers/model';

t.test('remote.add from another user is refused before its credentials file is looked at', async (t) => {
  const f = await openSmallEngine(t);
  const secret = join(f.dataDir, '..', 'secret.cred');
  writeFileSync(secret, 'aws_access_key_id = AKIAROOT\naws_secret_access_key = rootsecret\n', { mode: 0o600 });
  const ctxOf = (peerUid: number | undefined): CallContext => ({
    engine: f.engine, info: { version: 'test', build: 'test', pid: process.pid, startedAt: '' }, watch() {}, unwatch() {}, channels: new StreamChannels(() => undefined), peerUid,
  });
  const add = (peerUid: number | undefined, name: string, credentialsFile: string): Promise<unknown> =>
    lookupMethod('remote.add')!.call(ctxOf(peerUid), { name, endpoint: 'http://127.0.0.1:9', bucket: 'stolen', credentialsFile });

  const other = process.getuid!() === 4242 ? 4243 : 4242;
  const answers = new Set<string>();
  for (const file of [secret, join(f.dataDir, '..', 'missing'), '/dev/null', f.dataDir, '/etc/passwd']) {
    const e = await add(other, 'evil', file).then(() => null, (err: { code: string; message: string }) => err);
    t.match(e, { code: 'NotAuthorized', message: new RegExp(`not uid ${other}`) }, `refused for ${file}`);
    answers.add(e!.message);
  }
  t.equal(answers.size, 1, 'the same answer whatever the file is, so it tells nothing about it');
  await t.rejects(add(undefined, 'evil', secret), { code: 'NotAuthorized', message: /whose user the kernel did not report/ }, 'an unknown peer is not taken for root');
  t.same(f.engine.offsite.replication.listRemotes(), [], 'nothing was added');

  t.match(await add(process.getuid!(), 'own', secret), { name: 'own', credentialsFile: secret }, 'the daemon\'s own user adds it');
  if (process.getuid!() !== 0) t.match(await add(0, 'byroot', secret), { name: 'byroot' }, 'and root does');
});

t.test('a socket user who is neither root nor the daemon\'s user cannot use root\'s secrets', async (t) => {
  if (process.getuid?.() !== 0 || spawnSync('setpriv', ['--version']).status !== 0) {
    t.pass('skipped: switching to another uid needs root and setpriv', { skip: true });
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'bsr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const layout = makeLayout(dir);
  const d = await DaemonProcess.start(layout, ['--socket-group', 'daemon']);
  t.teardown(() => d.kill());
  const secret = join(dir, 'root.cred');
  writeFileSync(secret, 'aws_access_key_id = AKIAROOT\naws_secret_access_key = rootsecret\n', { mode: 0o600 });

  const cli = (args: string[], asNobody: boolean) => {
    const argv = [process.execPath, BIN, '--socket', layout.socketPath, '--json', ...args];
    const o = { encoding: 'utf8' as const, timeout: 60_000, cwd: '/' };
    const r = asNobody
      ? spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--groups=daemon', ...argv], o)
      : spawnSync(argv[0]!, argv.slice(1), o);
    return JSON.parse(r.stdout || 'null') as unknown;
  };
  const evil = cli(['remote', 'add', 'evil', '--endpoint', 'http://127.0.0.1:9', '--bucket', 'stolen', '--credentials', secret], true);
  t.match(evil, { error: { code: 'NotAuthorized', message: /only root or the daemon's user \(uid 0\) may add a remote, not uid 65534/ } });
  const list = cli(['remote', 'list'], true);
  t.same(list, [], 'the socket user may still use the daemon, and nothing was added');
  const own = cli(['remote', 'add', 'offsite', '--endpoint', 'http://127.0.0.1:9', '--bucket', 'backups', '--credentials', secret], false);
  t.match(own, { name: 'offsite' }, 'root adds it');
  t.match(cli(['remote', 'list'], true), [{ name: 'offsite' }], 'and the socket user sees it');
  t.equal(await d.stop(), 0);
});
