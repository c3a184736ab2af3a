/**
 * `blocksnap version` tells builds apart: a daemon started from the same install shows the
 * client's build, and one still running other code (an upgrade not yet restarted) is named.
 */
import t from 'tap';
import { appendFileSync, cpSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, ensureBuilt, freshDaemon, startDaemon, tempDir } from './fixtures/harness';

t.test('a daemon of the same install runs the client\'s build, and version says nothing more', async (t) => {
  const d = await freshDaemon(t);
  const v = await d.json('version');
  t.match(v.client.build, /^[0-9a-f]{12}$/);
  t.equal(v.daemon.build, v.client.build);
  const human = await d.cli('version');
  t.equal(human.code, 0);
  t.match(human.stdout, new RegExp(`client: +blocksnap \\S+ \\(build ${v.client.build},`));
  t.match(human.stdout, new RegExp(`daemon: +blocksnap \\S+ \\(build ${v.client.build},`));
  t.notMatch(human.stdout, /another build|restart it/);
});

t.test('a daemon started from other code is named as another build, with the advice to restart it', async (t) => {
  ensureBuilt();
  // Another install of the package whose compiled code differs by one line: what a daemon still
  // runs after the package beside it was upgraded.
  const dir = tempDir(t);
  const other = join(dir, 'other');
  mkdirSync(other);
  for (const entry of ['package.json', 'bin', 'dist']) cpSync(join(ROOT, entry), join(other, entry), { recursive: true });
  mkdirSync(join(other, 'build'));
  symlinkSync(join(ROOT, 'build', 'Release'), join(other, 'build', 'Release'));
  symlinkSync(join(ROOT, 'node_modules'), join(other, 'node_modules'));
  appendFileSync(join(other, 'dist', 'cli', 'main.js'), '// another build\n');
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot);
  const d = await startDaemon(t, { dataDir: join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock'), bin: join(other, 'bin', 'blocksnap.js') });

  const v = await d.json('version');
  t.match(v.daemon.build, /^[0-9a-f]{12}$/);
  t.not(v.daemon.build, v.client.build);
  const human = await d.cli('version');
  t.equal(human.code, 0, 'a note, not a failure');
  t.match(human.stdout, new RegExp(`note: +the daemon runs another build than this client \\(${v.daemon.build}\\); restart it to run this client's code`));
});
