/**
 * Two options that contradict each other (--x and --no-x, --enable and --disable) are refused as
 * a usage error, whatever their order, on every command that has such a pair: neither is
 * dropped in favour of the last one, and with it what it asked for.
 */
import type { Command } from 'commander';
import t from 'tap';
import { contradictingPairs } from '../../src/cli/arguments';
import { buildProgram } from '../../src/cli/main';
import { ensureBuilt, runCli } from '../integration/fixtures/harness';

const socket = ['--socket', '/nonexistent/blocksnap.sock', '--json'];

function leaves(cmd: Command, path: string[] = []): Array<{ path: string[]; cmd: Command }> {
  if (cmd.commands.length === 0) return [{ path, cmd }];
  return cmd.commands.flatMap((c) => leaves(c, [...path, c.name()]));
}

/** A command line of `cmd` that parses up to its options: a word per required argument and mandatory option. */
function skeleton(path: string[], cmd: Command): string[] {
  const args = cmd.registeredArguments.filter((a) => a.required).map(() => 'x');
  const mandatory = cmd.options.filter((o) => o.mandatory).flatMap((o) => [o.long!, 'x']);
  return [...path, ...args, ...mandatory];
}

function withValue(cmd: Command, flag: string): string[] {
  const o = cmd.options.find((opt) => opt.long === flag)!;
  return o.required || o.optional ? [flag, 'offsite'] : [flag];
}

const commands = leaves(buildProgram()).map((c) => ({ ...c, pairs: contradictingPairs(c.cmd) }));

t.test('the pairs found are those the commands have', async (t) => {
  const found = commands.filter((c) => c.pairs.length > 0).map((c) => ({ command: c.path.join(' '), pairs: c.pairs }));
  t.same(found, [{ command: 'policy update', pairs: [['--replicate-to', '--no-replicate-to'], ['--enable', '--disable']] }]);
});

t.test('both options of every pair, in either order, are InvalidArgument with exit 2, before connecting', async (t) => {
  ensureBuilt();
  for (const { path, cmd, pairs } of commands) {
    for (const [a, b] of pairs) {
      for (const [first, second] of [[a, b], [b, a]] as const) {
        const args = [...skeleton(path, cmd), ...withValue(cmd, first), ...withValue(cmd, second), ...socket];
        const r = await runCli(args);
        t.equal(r.code, 2, `blocksnap ${args.join(' ')} exits 2`);
        t.match(r.json(), { error: { code: 'InvalidArgument', message: `${a} and ${b} exclude each other` } }, args.join(' '));
      }
      for (const one of [a, b]) {
        const r = await runCli([...skeleton(path, cmd), ...withValue(cmd, one), ...socket]);
        t.match(r.json(), { error: { code: 'DaemonUnavailable' } }, `${path.join(' ')} ${one} alone goes on to the daemon`);
      }
    }
  }
});

t.test('policy update with --replicate-to and --no-replicate-to says so without --json too', async (t) => {
  ensureBuilt();
  const r = await runCli(['policy', 'update', 'rr', '--replicate-to', 'nosuch', '--no-replicate-to', '--socket', '/nonexistent/blocksnap.sock']);
  t.equal(r.code, 2);
  t.equal(r.stderr, 'blocksnap: --replicate-to and --no-replicate-to exclude each other [InvalidArgument]\n');
  t.equal(r.stdout, '');
});
