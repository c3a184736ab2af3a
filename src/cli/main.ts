/**
 * The `blocksnap` command line. Parsing is commander's; this file owns the exit status contract:
 * 0 success, 1 an operation failed, 2 the command line is wrong, 130 a wait was interrupted by
 * Ctrl-C (128 + the signal's number for SIGTERM and SIGHUP). With --json even parse errors are
 * printed as {"error":{...}} on stdout.
 */
import { Command, CommanderError } from 'commander';
import { BlocksnapError } from '../errors';
import { PACKAGE_VERSION } from '../daemon/build-info';
import { registerChain } from './commands/chain';
import { registerClone } from './commands/clone';
import { registerDaemon } from './commands/daemon';
import { registerDisk } from './commands/disk';
import { registerGroup } from './commands/group';
import { registerPolicy } from './commands/policy';
import { registerJob } from './commands/job';
import { registerRollback } from './commands/rollback';
import { registerSnapshot } from './commands/snapshot';
import { registerStore } from './commands/store';
import { registerRemote } from './commands/remote';
import { registerReplicate } from './commands/replicate';
import { registerRestore } from './commands/restore';
import { registerImport } from './commands/import';
import { registerSnapshotStreams } from './commands/snapshot-stream';
import { registerVersion } from './commands/version';
import { registerExport } from './commands/export';
import { refuseContradictions } from './arguments';
import { commonOptions } from './context';
import { EXIT } from './exit-status';
import { InterruptedWait, reportInterrupted } from './follow';
import { reportError } from './output';

export function buildProgram(): Command {
  const program = new Command('blocksnap')
    .description('Incremental point-in-time snapshots of VM disk images')
    .version(PACKAGE_VERSION, '-V, --version', 'print the client version')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', `
Every client command takes --socket PATH (env BLOCKSNAP_SOCKET) and --json, after the command
or before all of it (blocksnap --json disk list), not between its words (given both ways, the
one after the command wins).
A DISK or SNAPSHOT argument is an id (d-..., s-...) or a unique name.

A command that waits for jobs answers Ctrl-C: on a terminal it asks whether to cancel them,
detach (leave them running) or keep waiting (Ctrl-C again at the question detaches; Ctrl-D
keeps waiting); without a terminal it cancels them, or leaves them running with
--detach-on-interrupt. SIGTERM is answered as Ctrl-C without a terminal; SIGHUP (the terminal
went away) leaves them running (a stream to stdout or from stdin is cancelled: it ends with the
command). It says which and exits 128 + the signal's number: 130, 143 (SIGTERM), 129 (SIGHUP).

Examples:
  $ blocksnap daemon --data-dir /var/lib/blocksnap --image-root /var/lib/libvirt/images
  $ blocksnap disk add /var/lib/libvirt/images/web1.img --name web1
  $ blocksnap snapshot create web1 --name before-upgrade
  $ blocksnap rollback web1 before-upgrade
  $ blocksnap --json disk list
`);
  // Before any command is added: they inherit its positional options.
  commonOptions(program);
  registerDaemon(program);
  registerDisk(program);
  registerSnapshot(program);
  registerSnapshotStreams(program);
  registerRollback(program);
  registerClone(program);
  registerChain(program);
  registerPolicy(program);
  registerGroup(program);
  registerStore(program);
  registerRemote(program);
  registerReplicate(program);
  registerRestore(program);
  registerImport(program);
  registerExport(program);
  registerJob(program);
  registerVersion(program);
  // Parse errors of every subcommand go through main()'s catch, to honour --json and exit 2,
  // and so do options that contradict each other.
  const configure = (cmd: Command): void => {
    cmd.exitOverride();
    refuseContradictions(cmd);
    cmd.commands.forEach(configure);
  };
  configure(program);
  program.hook('preAction', (_program, action) => refuseEmptyArguments(action));
  return program;
}

/**
 * No argument of any command means anything when empty (an id, a name, a path, a key), and the
 * daemon's refusal would name its protocol parameter (`params.job`), not what the user typed.
 */
function refuseEmptyArguments(cmd: Command): void {
  cmd.registeredArguments.forEach((arg, i) => {
    const value: unknown = cmd.processedArgs[i];
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => v === '')) {
      const path = [] as string[];
      for (let c: Command | null = cmd; c?.parent; c = c.parent) path.unshift(c.name());
      throw new BlocksnapError('InvalidArgument', `the <${arg.name()}> argument of ${path.join(' ')} is empty (see blocksnap ${path.join(' ')} --help)`);
    }
  });
}

/** commander's "error: message\n(hint)" as "blocksnap: message [InvalidArgument]\n(hint)". */
function usageText(text: string): string {
  const [first = '', ...rest] = text.replace(/^error: /, '').replace(/\n$/, '').split('\n');
  return [`blocksnap: ${first} [InvalidArgument]`, ...rest].join('\n') + '\n';
}

/** Runs the CLI and resolves with the process exit status. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const json = argv.slice(2).includes('--json');
  watchStdout(json);
  const program = buildProgram();
  // commander prints its own parse errors to stderr, here in the shape of every other error
  // (docs/errors.md), so a script matching "[Code]" on stderr sees usage errors too; with --json
  // the error object replaces them. A parser called inside an action throws the same error class
  // unprinted, so remember which it was.
  let commanderPrinted = false;
  const watch = (cmd: Command): void => {
    cmd.configureOutput({
      outputError: (text, write) => {
        commanderPrinted = true;
        if (!json) write(usageText(text));
      },
      ...(json ? { writeErr: () => undefined } : {}),
    });
    cmd.commands.forEach(watch);
  };
  watch(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return EXIT.ok; // --help, --version
      if (err.code === 'commander.help') {
        // A command group given no command: its usage went to stderr, and is the whole message.
        if (json) reportError(new BlocksnapError('InvalidArgument', 'a command is missing (see blocksnap --help)'), true);
        return EXIT.usage;
      }
      if (json || !commanderPrinted) reportError(new BlocksnapError('InvalidArgument', err.message.replace(/^error: /, '')), json);
      return EXIT.usage;
    }
    if (err instanceof InterruptedWait) return reportInterrupted(err, json);
    return reportError(err, json);
  }
}

/**
 * Failures to write stdout. Without a listener each is an unhandled 'error' event and a stack trace.
 *  - A reader that stops early (`blocksnap job list | head -1`) closes the pipe: what is left to
 *    print goes nowhere, as with any other command-line tool, and the exit status stays the
 *    command's (the request was made; only its output was cut).
 *  - Any other failure (`> /dev/full`: ENOSPC; EIO) lost output someone wanted: it is reported
 *    (IOError, on stderr since stdout is what failed) and the command exits 1. A command whose
 *    stdout carries a stream (`snapshot export -o -`) listens itself and reports StreamClosed, so
 *    this one then stays silent.
 */
let stdoutWatched = false;
let stdoutFailed = false;
function watchStdout(json: boolean): void {
  if (stdoutWatched) return;
  stdoutWatched = true;
  const onError = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE' || stdoutFailed) return;
    if (process.stdout.listeners('error').some((l) => l !== onError)) return;
    stdoutFailed = true;
    reportError(new BlocksnapError('IOError', `cannot write the output: ${err.code ?? err.message}`), json, process.stderr);
    if (!process.exitCode) process.exitCode = EXIT.failed;
  };
  process.stdout.on('error', onError);
}

/** The exit status of a command that returned `status`: a failed stdout turns success into failure. */
export function finalStatus(status: number): number {
  return status === EXIT.ok && stdoutFailed ? EXIT.failed : status;
}

if (require.main === module) {
  void main().then((status) => {
    process.exitCode = finalStatus(status);
  });
}
