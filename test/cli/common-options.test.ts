/**
 * --socket and --json, which every client command takes, work before the command too
 * (`blocksnap --json disk list`), for every command; given both before and after it, the one
 * after wins. The program's --help lists them.
 */
import type { Command } from 'commander';
import t from 'tap';
import { buildProgram } from '../../src/cli/main';
import { ensureBuilt, runCli } from '../integration/fixtures/harness';

const NO_DAEMON = '/nonexistent/blocksnap.sock';

function leaves(cmd: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  if (cmd.commands.length === 0) return [{ path, cmd }];
  return cmd.commands.flatMap((c) => leaves(c, [...path, c.name()]));
}

/** Parses `argv` with the action of the command at `path` replaced; resolves with the options it got. */
async function optionsSeen(path: string[], argv: string[]): Promise<Record<string, unknown> | null> {
  const program = buildProgram();
  let cmd: Command = program;
  for (const name of path) cmd = cmd.commands.find((c) => c.name() === name)!;
  let seen: Record<string, unknown> | null = null;
  cmd.action((...args: unknown[]) => {
    seen = (args[args.length - 1] as Command).opts();
  });
  await program.parseAsync(['node', 'blocksnap', ...argv]);
  return seen;
}

/** A command line of `cmd` that parses: a word per required argument and mandatory option. */
function skeleton(path: string[], cmd: Command): string[] {
  const args = cmd.registeredArguments.filter((a) => a.required).map(() => 'x');
  const mandatory = cmd.options.filter((o) => o.mandatory).flatMap((o) => [o.long!, 'x']);
  return [...path, ...args, ...mandatory];
}

t.test('every client command takes --socket and --json before it as after it', async (t) => {
  const clients = leaves(buildProgram()).filter((c) => c.path[0] !== 'daemon');
  t.ok(clients.length > 40, `${clients.length} commands`);
  for (const { path, cmd } of clients) {
    const line = skeleton(path, cmd);
    const before = await optionsSeen(path, ['--socket', '/run/a.sock', '--json', ...line]);
    t.match(before, { socket: '/run/a.sock', json: true }, `blocksnap --socket /run/a.sock --json ${line.join(' ')}`);
    const after = await optionsSeen(path, [...line, '--socket', '/run/a.sock', '--json']);
    t.match(after, { socket: '/run/a.sock', json: true }, `blocksnap ${line.join(' ')} --socket /run/a.sock --json`);
    const both = await optionsSeen(path, ['--socket', '/run/a.sock', ...line, '--socket', '/run/b.sock']);
    t.match(both, { socket: '/run/b.sock' }, `${path.join(' ')}: the --socket after the command wins`);
    const neither = await optionsSeen(path, line);
    t.equal(neither?.socket, undefined, `${path.join(' ')}: no --socket, none is set`);
    t.equal(neither?.json, undefined, `${path.join(' ')}: no --json, none is set`);
  }
});

t.test('a --socket before daemon is the socket it listens on; a --json before it is refused', async (t) => {
  t.match(await optionsSeen(['daemon'], ['--socket', '/run/d.sock', 'daemon', '--data-dir', '/tmp']), { socket: '/run/d.sock', dataDir: '/tmp' });
  await t.rejects(optionsSeen(['daemon'], ['--json', 'daemon']), { code: 'InvalidArgument', message: 'blocksnap daemon takes no --json' });
});

t.test('the compiled CLI connects to the socket given before the command, and prints JSON for a --json there', async (t) => {
  ensureBuilt();
  const human = await runCli(['--socket', NO_DAEMON, 'disk', 'list']);
  t.equal(human.code, 1);
  t.match(human.stderr, `no blocksnap daemon is listening on ${NO_DAEMON}`);
  t.match(human.stderr, /\[DaemonUnavailable\]\n$/);

  const json = await runCli(['--json', 'disk', 'list'], { BLOCKSNAP_SOCKET: NO_DAEMON });
  t.equal(json.code, 1);
  t.match(json.json(), { error: { code: 'DaemonUnavailable', message: new RegExp(NO_DAEMON) } });
  t.equal(json.stderr, '');

  const later = await runCli(['--json', '--socket', '/nonexistent/a.sock', 'snapshot', 'list', '--socket', NO_DAEMON]);
  t.match(later.json(), { error: { code: 'DaemonUnavailable', message: new RegExp(NO_DAEMON) } }, 'the --socket after the command wins');

  const usage = await runCli(['--json', 'snapshot', 'create', '--socket', NO_DAEMON]);
  t.equal(usage.code, 2, 'a usage error after a --json before the command');
  t.match(usage.json(), { error: { code: 'InvalidArgument', message: /missing required argument 'disk'/ } });

  const daemon = await runCli(['--json', 'daemon']);
  t.equal(daemon.code, 2);
  t.match(daemon.json(), { error: { code: 'InvalidArgument', message: 'blocksnap daemon takes no --json' } });
});

t.test('blocksnap --help lists --socket and --json, and says they work before the command', async (t) => {
  ensureBuilt();
  const r = await runCli(['--help']);
  t.equal(r.code, 0);
  const options = r.stdout.slice(r.stdout.indexOf('Options:'), r.stdout.indexOf('Commands:'));
  t.match(options, /^ {2}--socket <path> /m);
  t.match(options, /^ {2}--json /m);
  t.match(r.stdout, /--socket PATH \(env BLOCKSNAP_SOCKET\) and --json, after the command\nor before all of it \(blocksnap --json disk list\), not between its words/);
  t.match(r.stdout, /\$ blocksnap --json disk list/);
});

t.test('policy update --help shows no creation defaults: update keeps what it is not given', async (t) => {
  ensureBuilt();
  const update = await runCli(['policy', 'update', '--help']);
  t.notMatch(update.stdout, /\(default:\s+(1-7|UTC)\)/);
  const create = await runCli(['policy', 'create', '--help']);
  t.match(create.stdout, /--weekdays <list>\s+ISO weekdays to run on, 1 Monday - 7 Sunday\s+\(default:\s+1-7\)/);
  t.match(create.stdout, /--time-zone <zone>\s+IANA time zone the hours and retention periods are in\s+\(default: UTC\)/);
});
