import type { Command } from 'commander';
import t from 'tap';
import { buildProgram } from '../../src/cli/main';
import { CONFIG_FILE_KEYS } from '../../src/daemon/config';
import { JOB_KINDS } from '../../src/engine/types';
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

t.test('a usage error the parser finds is printed like every other error, with its code', async (t) => {
  ensureBuilt();
  const unknown = await runCli(['disk', 'list', '--bogus']);
  t.equal(unknown.code, 2);
  t.equal(unknown.stderr, "blocksnap: unknown option '--bogus' [InvalidArgument]\n(add --help for usage)\n");
  const badValue = await runCli(['policy', 'create', '--name', 'p', '--hours', '25']);
  t.equal(badValue.code, 2);
  t.match(badValue.stderr, /^blocksnap: option '--hours <list>' argument '25' is invalid\. .* \[InvalidArgument\]\n/);
  const typo = await runCli(['disk', 'lst']);
  t.match(typo.stderr, /^blocksnap: unknown command 'lst' \[InvalidArgument\]\n\(Did you mean one of list, ls\?\)\n/);
});

t.test('under --json a usage error the parser finds is the error object on stdout, alone, with exit 2', async (t) => {
  ensureBuilt();
  const cases: Array<{ args: string[]; message: RegExp }> = [
    { args: ['--json', 'disk', 'list', '--bogus'], message: /^unknown option '--bogus'$/ },
    { args: ['disk', 'lst', '--json'], message: /^unknown command 'lst'/ },
    { args: ['--json', 'nosuch'], message: /^unknown command 'nosuch'$/ },
    { args: ['disk', 'list', '--json', '--socket'], message: /^option '--socket <path>' argument missing$/ },
    { args: ['remote', 'verify', '--json'], message: /^missing required argument 'remote'$/ },
  ];
  for (const c of cases) {
    const r = await runCli(c.args);
    t.equal(r.code, 2, `${c.args.join(' ')} exits 2`);
    t.match(r.json(), { error: { code: 'InvalidArgument', message: c.message } }, c.args.join(' '));
    t.equal(r.stderr, '', `${c.args.join(' ')} prints nothing on stderr`);
  }
});

t.test('no command, or a group without its command, prints the usage and exits 2', async (t) => {
  ensureBuilt();
  for (const args of [[], ['disk'], ['snapshot']]) {
    const r = await runCli(args);
    t.equal(r.code, 2, `blocksnap ${args.join(' ')} exits 2`);
    t.equal(r.stdout, '');
    t.match(r.stderr, /^Usage: blocksnap /, 'the usage is the message');
    t.notMatch(r.stderr, /outputHelp/, 'and nothing else follows it');
  }
});

t.test('out-of-range numbers are refused naming the option, before connecting', async (t) => {
  ensureBuilt();
  const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];
  const cases: Array<{ args: string[]; message: RegExp }> = [
    { args: ['replicate', 'web1', '--to', 'offsite', '--concurrency', '0'], message: /^--concurrency must be a whole number from 1 to 64, not "0"$/ },
    { args: ['replicate', 'web1', '--to', 'offsite', '--concurrency', '65'], message: /^--concurrency must be a whole number from 1 to 64/ },
    { args: ['restore', 'offsite', 's1', '/tmp/x.img', '--concurrency', '100'], message: /^--concurrency must be a whole number from 1 to 64/ },
    { args: ['import', 'offsite', 's1', '--disk', 'web1', '--concurrency', 'abc'], message: /^--concurrency must be a whole number from 1 to 64/ },
    { args: ['remote', 'gc', 'offsite', '--grace', '1h'], message: /^--grace must be a whole number from 0 to 315360000/ },
    { args: ['remote', 'gc', 'offsite', '--grace', '999999999999'], message: /^--grace must be a whole number from 0 to 315360000/ },
  ];
  for (const c of cases) {
    const r = await runCli([...c.args, ...socket]);
    t.equal(r.code, 2, `${c.args.join(' ')} exits 2`);
    t.match(r.json(), { error: { code: 'InvalidArgument', message: c.message } }, c.args.join(' '));
  }
});

t.test('a socket path longer than a Unix socket can have is a usage error, not "no daemon"', async (t) => {
  ensureBuilt();
  const long = `/tmp/${'x'.repeat(120)}.sock`;
  const r = await runCli(['disk', 'list', '--socket', long, '--json']);
  t.equal(r.code, 2);
  t.match(r.json(), { error: { code: 'InvalidArgument', message: /longer than 107 bytes/ } });
  const env = await runCli(['disk', 'list'], { BLOCKSNAP_SOCKET: long });
  t.equal(env.code, 2, 'from BLOCKSNAP_SOCKET too');
  t.match(env.stderr, /longer than 107 bytes .*\[InvalidArgument\]/);
});

t.test('a stream through stdin or stdout cannot be left running on Ctrl-C', async (t) => {
  ensureBuilt();
  const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];
  for (const args of [['snapshot', 'export', 'base', '-o', '-'], ['snapshot', 'import', '-i', '-', '--disk', 'web1']]) {
    const r = await runCli([...args, '--detach-on-interrupt', ...socket]);
    t.equal(r.code, 2, `${args.join(' ')} --detach-on-interrupt exits 2`);
    const json = (args[1] === 'export' ? JSON.parse(r.stderr) : r.json()) as unknown;
    t.match(json, { error: { code: 'InvalidArgument', message: /--detach-on-interrupt cannot be used with -[oi] -: .* ends with it/ } });
  }
});

t.test('job help names every kind of job', async (t) => {
  let help = '';
  const job = buildProgram().commands.find((c) => c.name() === 'job')!;
  job.configureOutput({ writeOut: (s) => (help += s) });
  job.outputHelp();
  help = help.replace(/\s+/g, ' ');
  for (const kind of ['snapshot', 'rollback', 'clone', 'verify', 'gc', 'flatten', 'export', 'import', 'replicate', 'restore', 'remote-gc']) {
    t.ok((JOB_KINDS as readonly string[]).includes(kind), `${kind} is a job kind`);
  }
  for (const kind of JOB_KINDS) t.match(help, new RegExp(`[(, ]${kind}[,)]`), kind);
});

t.test('daemon help names every key of the config file, and explains those no option sets', async (t) => {
  const help = helpOf('daemon');
  for (const key of CONFIG_FILE_KEYS) t.match(help, new RegExp(`\\b${key}\\b`), key);
  t.match(help, /blockSize bytes per block of a new data directory/);
  t.match(help, /threads native worker threads per job/);
});

t.test('an empty argument is refused by the CLI, naming the argument as --help does, before any daemon is asked', async (t) => {
  ensureBuilt();
  // No daemon listens on this socket: the refusal must come first, or this would be DaemonUnavailable.
  const socket = ['--socket', '/nonexistent/blocksnap.sock'];
  const human = await runCli(['job', 'cancel', '', ...socket]);
  t.equal(human.code, 2);
  t.equal(human.stderr, 'blocksnap: the <job> argument of job cancel is empty (see blocksnap job cancel --help) [InvalidArgument]\n');
  const json = await runCli(['group', 'create', 'web1-root', '', '--json', ...socket]);
  t.equal(json.code, 2);
  t.match(json.json(), { error: { code: 'InvalidArgument', message: 'the <disks> argument of group create is empty (see blocksnap group create --help)' } });
});
