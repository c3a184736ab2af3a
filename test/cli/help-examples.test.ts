/**
 * Every "$ blocksnap ..." example of every --help is a command line the CLI accepts: each goes
 * through the compiled CLI with no daemon behind its socket, and must get as far as connecting
 * (DaemonUnavailable). A parse error, a refused option value or a setting the CLI checks
 * itself would stop it before.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Command } from 'commander';
import t from 'tap';
import { buildProgram } from '../../src/cli/main';
import { validateBucket, validateEndpoint, validatePrefix, validateRegion, validateRemoteName } from '../../src/remote/config';
import { ensureBuilt, ROOT, runCli } from '../integration/fixtures/harness';

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

function helpOf(cmd: Command): string {
  let help = '';
  cmd.configureOutput({ writeOut: (s) => (help += s) });
  cmd.outputHelp();
  return help;
}

/** Shell words of one command line: blanks split, quotes group; `|` outside quotes ends a command. */
function shellCommands(line: string): string[][] {
  const commands: string[][] = [[]];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (const ch of line) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word ??= '';
    } else if (ch === ' ') {
      if (word !== null) commands[commands.length - 1]!.push(word);
      word = null;
    } else if (ch === '|' && word === null) {
      commands.push([]);
    } else {
      word = (word ?? '') + ch;
    }
  }
  if (word !== null) commands[commands.length - 1]!.push(word);
  return commands;
}

interface Example { help: string; line: string; args: string[] }

/** The blocksnap invocations of every example line, also those after `ssh HOST` or a pipe. */
function examples(): Example[] {
  const out: Example[] = [];
  for (const cmd of allCommands(buildProgram())) {
    const help = helpOf(cmd);
    const name = cmd.parent === null ? 'blocksnap' : `blocksnap ${cmd.name()}`;
    for (const m of help.matchAll(/^ {2}\$ (.*)$/gm)) {
      for (const words of shellCommands(m[1]!)) {
        const at = words.indexOf('blocksnap');
        if (at >= 0) out.push({ help: name, line: m[1]!, args: words.slice(at + 1) });
      }
    }
  }
  return out;
}

const all = examples();

t.test('the help texts have examples to check', async (t) => {
  t.ok(all.length > 50, `${all.length} examples`);
  t.ok(all.some((e) => e.args[0] === 'remote' && e.args[1] === 'add'), 'remote add among them');
});

/**
 * Runs each command line through the compiled CLI's main(), one after another in one child
 * process (a process each took minutes on a loaded host), with the output captured per line.
 */
function runInOneProcess(lines: string[][]): Array<{ code: number; said: string }> {
  const script = `
    const { main } = require(${JSON.stringify(join(ROOT, 'dist', 'cli', 'main.js'))});
    (async () => {
      const results = [];
      const stdout = process.stdout.write.bind(process.stdout);
      const stderr = process.stderr.write.bind(process.stderr);
      for (const args of JSON.parse(process.argv[1])) {
        let said = '';
        process.stdout.write = process.stderr.write = (chunk, ...rest) => {
          said += String(chunk);
          const done = rest.find((r) => typeof r === 'function');
          if (done) done();
          return true;
        };
        process.exitCode = undefined;
        let code;
        try {
          code = await main(['node', 'blocksnap', ...args]);
        } catch (err) {
          code = -1;
          said += String(err && err.stack || err);
        }
        process.stdout.write = stdout;
        process.stderr.write = stderr;
        results.push({ code, said });
      }
      process.exitCode = 0;
      stdout(JSON.stringify(results));
    })();`;
  const r = spawnSync(process.execPath, ['-e', script, JSON.stringify(lines)], {
    encoding: 'utf8', env: { ...process.env, BLOCKSNAP_SOCKET: '/nonexistent/blocksnap.sock' }, maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`the examples run failed (${r.status}): ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as Array<{ code: number; said: string }>;
}

t.test('every example of a client command gets as far as connecting', async (t) => {
  ensureBuilt();
  const clients = all.filter((e) => e.args[0] !== 'daemon');
  const results = runInOneProcess(clients.map((e) => e.args));
  clients.forEach((e, i) => {
    const { code, said } = results[i]!;
    t.ok(code === 1 && /\[DaemonUnavailable\]|"code":\s*"DaemonUnavailable"/.test(said),
      `${e.help} --help: blocksnap ${e.args.join(' ')}`, { exit: code, output: said });
  });
});

t.test('every daemon example parses', async (t) => {
  const daemons = all.filter((e) => e.args[0] === 'daemon');
  t.ok(daemons.length > 0);
  for (const e of daemons) {
    const program = buildProgram();
    let parsed: Record<string, unknown> | null = null;
    program.commands.find((c) => c.name() === 'daemon')!.action((flags: Record<string, unknown>) => {
      parsed = flags;
    });
    await program.parseAsync(['node', 'blocksnap', ...e.args]);
    t.ok(parsed, `${e.help} --help: blocksnap ${e.args.join(' ')}`);
  }
});

t.test('the remote add examples name settings the daemon accepts', async (t) => {
  const adds = all.filter((e) => e.args[0] === 'remote' && e.args[1] === 'add');
  t.ok(adds.length > 0);
  for (const e of adds) {
    const value = (option: string): string | undefined => {
      const i = e.args.indexOf(option);
      return i < 0 ? undefined : e.args[i + 1];
    };
    t.doesNotThrow(() => {
      validateRemoteName(e.args[2]);
      validateEndpoint(value('--endpoint'));
      validateBucket(value('--bucket'));
      validatePrefix(value('--prefix'));
      validateRegion(value('--region'));
    }, e.line);
  }
});

t.test('remote add refuses a bucket the daemon would refuse, before connecting', async (t) => {
  ensureBuilt();
  const r = await runCli(['remote', 'add', 's3', '--endpoint', 'https://s3.example', '--bucket', 'b', '--credentials', '/root/.s3cred', '--json'],
    { BLOCKSNAP_SOCKET: '/nonexistent/blocksnap.sock' });
  t.equal(r.code, 2);
  t.match(r.json(), { error: { code: 'InvalidArgument', message: /bucket "b" must be 3-63 of a-z 0-9 \. -/ } });
});
