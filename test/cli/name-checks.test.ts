/**
 * Every command that names something checks the name as the daemon would before it connects, so
 * a bad name is the same usage error (InvalidName, exit 2) whichever command it was given to and
 * whether or not a daemon answers.
 */
import t from 'tap';
import { ensureBuilt, runCli } from '../integration/fixtures/harness';

const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];

const naming: string[][] = [
  ['disk', 'add', '/tmp/vm.img', '--name'],
  ['snapshot', 'create', 'vm', '--name'],
  ['clone', 'p1', '--cow', '--name'],
  ['export', 'start', 'p1', '--name'],
  ['export', 'start', 'c3', '--writable', '--name'],
  ['group', 'create', 'vm', '--name'],
  ['policy', 'create', '--hours', '1', '--name'],
  ['policy', 'update', 'daily', '--name'],
];

t.test('an empty name is InvalidName with exit 2 on every command that takes one, before connecting', async (t) => {
  ensureBuilt();
  for (const args of naming) {
    const r = await runCli([...args, '', ...socket]);
    t.equal(r.code, 2, `${args.join(' ')} "" exits 2`);
    t.match(r.json(), { error: { code: 'InvalidName', message: /name ""/ } }, `${args.join(' ')} ""`);
  }
});

t.test('a name over 128 characters is InvalidName on every command that takes one', async (t) => {
  ensureBuilt();
  for (const args of naming) {
    const r = await runCli([...args, 'x'.repeat(129), ...socket]);
    t.match(r.json(), { error: { code: 'InvalidName' } }, `${args.join(' ')} with 129 characters`);
  }
});

t.test('a valid name goes on to the daemon', async (t) => {
  ensureBuilt();
  for (const args of naming) {
    const r = await runCli([...args, 'ok-name', ...socket]);
    t.match(r.json(), { error: { code: 'DaemonUnavailable' } }, args.join(' '));
  }
});
