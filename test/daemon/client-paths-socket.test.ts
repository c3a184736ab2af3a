/**
 * The rights a client gets for its paths come from the kernel: a real client run as another uid
 * in the socket's group (its uid and gid from SO_PEERCRED, its groups from /proc when it
 * connected) cannot register a root-only file, and gets a clone it asks for as its own.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DaemonProcess, makeLayout } from '../crash/daemon-process';
import { BIN } from '../integration/fixtures/harness';
import { asUserSkip, cleanEnv, scratch, USER_A } from '../helpers/as-user';
import { fillBlock, makeImage } from '../helpers/images';

const skip = asUserSkip();

t.test('a socket user registers and clones with its own rights', { skip }, async (t) => {
  const { dir } = scratch(t);
  const layout = makeLayout(dir);
  const d = await DaemonProcess.start(layout, ['--socket-group', String(USER_A.gid)]);
  t.teardown(() => d.kill());
  const cli = (...args: string[]): { error?: { code: string; message: string } } & Record<string, unknown> => {
    const r = spawnSync(process.execPath, [BIN, '--socket', layout.socketPath, '--json', ...args],
      { ...USER_A, cwd: '/', encoding: 'utf8', timeout: 120_000, env: cleanEnv({}) });
    return JSON.parse(r.stdout || 'null') as { error?: { code: string; message: string } };
  };
  const secret = makeImage(join(layout.imageRoot, 'secret.raw'), 65536);
  t.match(cli('disk', 'add', secret), { error: { code: 'NotAuthorized', message: new RegExp(`^uid ${USER_A.uid} may not read ${secret}`) } });

  const mine = join(layout.imageRoot, 'a');
  mkdirSync(mine, { mode: 0o700 });
  chownSync(mine, USER_A.uid, USER_A.gid);
  const image = makeImage(join(mine, 'vm.raw'), 65536);
  fillBlock(image, 0, 65536, 'vm');
  chownSync(image, USER_A.uid, USER_A.gid);
  t.match(cli('disk', 'add', image, '--name', 'vm'), { name: 'vm' });
  t.match(cli('snapshot', 'create', 'vm', '--name', 's1'), { status: 'available' });
  const clone = join(mine, 'c.raw');
  t.match(cli('clone', 's1', clone), { path: clone });
  t.match(statSync(clone), { uid: USER_A.uid, gid: USER_A.gid }, 'the clone is the socket user\'s');
  t.equal(await d.stop(), 0);
});
