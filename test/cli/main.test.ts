import type { Command } from 'commander';
import t from 'tap';
import { buildProgram } from '../../src/cli/main';
import { runCli, ensureBuilt } from '../integration/fixtures/harness';

function leaves(cmd: Command, path: string[] = []): Array<{ name: string; cmd: Command }> {
  if (cmd.commands.length === 0) return [{ name: path.join(' '), cmd }];
  return cmd.commands.flatMap((c) => leaves(c, [...path, c.name()]));
}

const commands = leaves(buildProgram());

t.test('every command of the contract exists', async (t) => {
  const names = commands.map((c) => c.name);
  for (const n of ['daemon', 'disk add', 'disk list', 'disk show', 'disk remove', 'snapshot create', 'snapshot list', 'snapshot show',
    'snapshot delete', 'rollback', 'clone', 'chain list', 'store stats', 'store gc', 'store verify', 'job list', 'job show',
    'job cancel', 'job wait', 'version']) {
    t.ok(names.includes(n), n);
  }
});

t.test('every command has examples in its help', async (t) => {
  for (const { name, cmd } of commands) {
    let help = '';
    cmd.configureOutput({ writeOut: (s) => (help += s) });
    cmd.outputHelp();
    t.match(help, /Examples:\n {2}\$ blocksnap /, `${name} --help has examples`);
  }
});

t.test('every client command takes --socket and --json', async (t) => {
  for (const { name, cmd } of commands) {
    if (name === 'daemon') continue;
    const flags = cmd.options.map((o) => o.long);
    t.ok(flags.includes('--socket') && flags.includes('--json'), name);
  }
});

t.test('usage errors exit 2, with the error object on stdout under --json', async (t) => {
  ensureBuilt();
  const r = await runCli(['snapshot', 'create', '--json']);
  t.equal(r.code, 2);
  t.match(r.json(), { error: { code: 'InvalidArgument', message: /missing required argument 'disk'/ } });
  t.equal(r.stderr, '');
  const human = await runCli(['snapshot', 'create', 'vm', '--name', 'auto-x']);
  t.equal(human.code, 2);
  t.match(human.stderr, /names starting with "auto" are reserved/);
  const help = await runCli(['rollback', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Examples:/);
});
