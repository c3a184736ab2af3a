/**
 * The socket is the daemon's only door: mode 0600 (its user only) or 0660 with a socket group,
 * never created or removed through a symlink, and a user outside the group cannot even connect. The uid checks run a
 * client as `nobody` with setpriv; they skip, saying so, where the machine cannot switch users.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DaemonProcess, makeLayout } from '../crash/daemon-process';

function layoutIn(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'bss-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return makeLayout(dir);
}

t.test('the socket is created with mode 0600: without a chosen group, only the daemon\'s user may connect', async (t) => {
  const layout = layoutIn(t);
  const d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  const st = lstatSync(layout.socketPath);
  t.ok(st.isSocket(), 'a socket');
  t.equal((st.mode & 0o777).toString(8), '600', 'mode 0600');
  t.equal(await d.stop(), 0);
});

t.test('a symlink at the socket path is refused and left alone', async (t) => {
  const layout = layoutIn(t);
  const victim = join(layout.dir, 'victim');
  writeFileSync(victim, 'keep me');
  for (const [what, target] of [['a file', victim], ['nothing (dangling)', join(layout.dir, 'nowhere')]] as const) {
    rmSync(layout.socketPath, { force: true });
    symlinkSync(target, layout.socketPath);
    const d = DaemonProcess.spawn(layout);
    const { code } = await d.exited;
    t.equal(code, 2, `the daemon refuses to start on a symlink to ${what}, for good`);
    t.match(d.stderr(), /SocketInUse/, 'with SocketInUse');
    t.ok(lstatSync(layout.socketPath).isSymbolicLink(), 'the symlink is still there');
  }
  t.equal(readFileSync(victim, 'utf8'), 'keep me', 'its target is untouched');
  t.equal((statSync(victim).mode & 0o777).toString(8), '644', 'and keeps its mode');
  t.notOk(existsSync(join(layout.dir, 'nowhere')), 'nothing was created through the dangling link');
});

/** Connects as nobody with the given groups; returns "connected" or the errno code. */
function connectAs(socketPath: string, groups: string[]): string {
  const script = `const s=require('net').connect(${JSON.stringify(socketPath)});` +
    `s.on('connect',()=>{process.stdout.write('connected');s.destroy()});s.on('error',e=>process.stdout.write(e.code))`;
  const args = ['--reuid=nobody', '--regid=nogroup', ...(groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups']), process.execPath, '-e', script];
  // A node start on a loaded machine can take seconds: only a hang should reach the timeout.
  const r = spawnSync('setpriv', args, { encoding: 'utf8', timeout: 60_000 });
  return r.stdout || `setpriv failed: ${r.stderr || r.error?.message}`;
}

t.test('a user outside the socket group cannot connect', async (t) => {
  if (process.getuid?.() !== 0 || spawnSync('setpriv', ['--version']).status !== 0) {
    t.pass('skipped: switching to another uid needs root and setpriv', { skip: true });
    return;
  }
  const layout = layoutIn(t);
  // Every directory on the way is traversable, so only the socket's own mode decides.
  chmodSync(layout.dir, 0o755);
  const d = await DaemonProcess.start(layout, ['--socket-group', 'daemon']);
  t.teardown(() => d.kill());
  t.equal(statSync(layout.socketPath).gid, 1, 'the socket belongs to the configured group');
  t.equal((statSync(layout.socketPath).mode & 0o777).toString(8), '660', 'mode 0660: the group may connect');
  t.equal(connectAs(layout.socketPath, []), 'EACCES', 'nobody, in no group, is refused by the kernel');
  t.equal(connectAs(layout.socketPath, ['daemon']), 'connected', 'the same uid in the socket group connects');
});
