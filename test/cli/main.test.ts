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

t.test('a malformed tag is reported with InvalidArgument and exit 2, with or without --json', async (t) => {
  ensureBuilt();
  for (const args of [['snapshot', 'tag', 's1', 'foo'], ['snapshot', 'list', '--tag', 'foo']]) {
    const human = await runCli(args);
    t.equal(human.code, 2, `${args.join(' ')} exits 2`);
    t.equal(human.stderr, 'blocksnap: tag "foo" must have the form key=value [InvalidArgument]\n', `${args.join(' ')} says why`);
    const json = await runCli([...args, '--json']);
    t.equal(json.code, 2);
    t.match(json.json(), { error: { code: 'InvalidArgument', message: /tag "foo" must have the form key=value/ } });
  }
});

t.test('clone refuses options that would not act instead of ignoring them', async (t) => {
  ensureBuilt();
  // Refused before connecting: with no daemon behind the socket, anything else would be DaemonUnavailable.
  const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];
  const cases: Array<{ args: string[]; message: RegExp }> = [
    { args: ['clone', 'base', '/tmp/x.raw', '--name', 'foo'], message: /--name .* needs --cow/ },
    { args: ['clone', 'base', '--cow', '--name', 'foo', '--format', 'qcow2'], message: /takes no --format/ },
    { args: ['clone', 'base', '--cow', '--name', 'foo', '--format', 'raw'], message: /takes no --format/ },
    { args: ['clone', 'base', '--cow', '--name', 'foo', '--no-wait'], message: /takes no --no-wait/ },
  ];
  for (const c of cases) {
    const r = await runCli([...c.args, ...socket]);
    t.equal(r.code, 2, `${c.args.join(' ')} exits 2`);
    t.match(r.json(), { error: { code: 'InvalidArgument', message: c.message } }, c.args.join(' '));
  }
  const accepted = await runCli(['clone', 'base', '--cow', '--name', 'foo', ...socket]);
  t.match(accepted.json(), { error: { code: 'DaemonUnavailable' } }, 'the valid --cow form goes on to the daemon');
});

/** The help of one command, as `blocksnap ... --help` prints it. */
function helpOf(name: string): string {
  const found = commands.find((c) => c.name === name);
  if (!found) throw new Error(`no command ${name}`);
  let help = '';
  found.cmd.configureOutput({ writeOut: (s) => (help += s) });
  found.cmd.outputHelp();
  return help.replace(/\s+/g, ' ');
}

t.test('policy update help says a retention option replaces the whole retention', async (t) => {
  t.match(helpOf('policy update'), /replaces the whole old retention/);
});

t.test('policy delete and unbind help say a later policy on the disk expires the snapshots left', async (t) => {
  for (const name of ['policy delete', 'policy unbind']) {
    t.match(helpOf(name), /a policy bound to the disk later applies its retention .* to all of them/, name);
  }
});
