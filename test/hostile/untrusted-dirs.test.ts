/**
 * A root daemon must not keep its store or its sockets where another user could replace them: a
 * data dir, a directory a symbolic link in it leads to, or a socket's directory that another user
 * owns or may write is refused at start, before anything is created there. Root is needed to give
 * the directories to another uid; elsewhere the test skips saying so.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DaemonProcess, makeLayout, type Layout } from '../crash/daemon-process';

const OTHER = 23458;
const skip = process.getuid?.() !== 0 && 'needs root to give directories to another uid';

function layoutIn(t: Test): Layout {
  const dir = mkdtempSync(join(tmpdir(), 'bsut-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return makeLayout(dir);
}

async function refused(t: Test, layout: Layout, extraArgs: string[], message: string | RegExp): Promise<void> {
  const d = DaemonProcess.spawn(layout, extraArgs);
  // ready() rejects once the daemon exits; a daemon that does listen is stopped, not waited for.
  const listened = await d.ready().then(() => true, () => false);
  await d.kill();
  t.notOk(listened, 'the daemon never listened');
  t.equal((await d.exited).code, 2, 'it refused to start, for good: a restart cannot mend it');
  t.match(d.stderr(), message);
  t.match(d.stderr(), /\[UntrustedPath\]/);
  t.notOk(existsSync(join(layout.dataDir, 'catalog.mdb')), 'the engine never opened');
  t.notOk(existsSync(layout.socketPath), 'no socket was created');
}

t.test('a data dir another user owns, or any user may write, is refused', { skip }, async (t) => {
  const owned = layoutIn(t);
  mkdirSync(owned.dataDir, { mode: 0o700 });
  chownSync(owned.dataDir, OTHER, OTHER);
  await refused(t, owned, [], `the data directory ${owned.dataDir} is owned by uid ${OTHER}, not by root`);

  const open = layoutIn(t);
  mkdirSync(open.dataDir);
  chmodSync(open.dataDir, 0o1777);
  await refused(t, open, [], `the data directory ${open.dataDir} may be written by every user (mode 1777)`);

  const group = layoutIn(t);
  mkdirSync(group.dataDir);
  chmodSync(group.dataDir, 0o770);
  await refused(t, group, [], `the data directory ${group.dataDir} may be written by every member of its group (gid 0) (mode 0770)`);
});

t.test('a symbolic link in the data dir to a directory another user owns is refused', { skip }, async (t) => {
  const layout = layoutIn(t);
  mkdirSync(layout.dataDir, { mode: 0o700 });
  const elsewhere = join(layout.dir, 'elsewhere');
  mkdirSync(elsewhere, { mode: 0o700 });
  chownSync(elsewhere, OTHER, OTHER);
  symlinkSync(elsewhere, join(layout.dataDir, 'blocks'));
  await refused(t, layout, [], `${elsewhere}, where the data directory's symbolic link ${join(layout.dataDir, 'blocks')} leads, is owned by uid ${OTHER}`);
  t.notOk(existsSync(join(elsewhere, 'tmp')), 'nothing was created through the link');
});

t.test('a socket directory any user may write is refused unless it is sticky', { skip }, async (t) => {
  const layout = layoutIn(t);
  const pub = join(layout.dir, 'pub');
  mkdirSync(pub);
  chmodSync(pub, 0o777);
  await refused(t, { ...layout, socketPath: join(pub, 'd.sock') }, [],
    `the directory ${pub} of the socket ${join(pub, 'd.sock')} may be written by every user (mode 0777), who could replace what the daemon keeps there. Choose a path in a directory only the daemon's user or root may write, or a sticky one like /tmp, with --socket`);
  await refused(t, layout, ['--nbd-socket', join(pub, 'nbd.sock')], /the directory .* of the socket .*nbd\.sock may be written by every user .* with --nbd-socket/);
  const owned = join(layout.dir, 'owned');
  mkdirSync(owned);
  chownSync(owned, OTHER, OTHER);
  await refused(t, { ...layout, socketPath: join(owned, 'd.sock') }, [], `the directory ${owned} of the socket ${join(owned, 'd.sock')} is owned by uid ${OTHER}`);

  chmodSync(pub, 0o1777);
  const d = await DaemonProcess.start({ ...layout, socketPath: join(pub, 'd.sock') });
  t.teardown(() => d.kill());
  t.equal(await d.stop(), 0, 'a sticky directory, like /tmp, is accepted');
});
