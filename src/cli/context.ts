/**
 * What every client command shares: the --socket and --json options, the connection to the
 * daemon, and the way a long command starts a job and (by default) follows it to the end.
 */
import { Option, type Command } from 'commander';
import { DaemonClient } from '../daemon/client';
import { PACKAGE_VERSION } from '../daemon/build-info';
import { checkSocketPath, clientSocketPath, defaultSocketPath, shownDefault, SOCKET_ENV } from '../daemon/paths';
import type { Job } from '../engine/types';
import { BlocksnapError } from '../errors';
import { followJob, noteEarlyInterrupt } from './follow';
import { createOutput, type Output } from './output';

export interface ClientFlags {
  socket?: string;
  json?: boolean;
}

export interface JobFlags extends ClientFlags {
  wait: boolean;
  detachOnInterrupt?: boolean;
}

/** Adds --socket and --json. */
export function clientOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--socket <path>', `daemon socket (default: $${SOCKET_ENV}, else ${shownDefault(defaultSocketPath())})`))
    .option('--json', 'print one JSON value on stdout (errors too)');
}

/** The options every client command takes (clientOptions), which may also come before the command. */
const COMMON_OPTIONS = ['socket', 'json'] as const;

/**
 * Lets `program` take --socket and --json before the command too (`blocksnap --json disk list`),
 * and hands them to the command that runs: set once, say in a shell alias, they work for every
 * command. The program reads its options only before the command's name (positional options),
 * so that what follows the name stays the command's own: given both before and after it, the
 * one after wins, as when an option is given twice. `daemon`, the one command without --json,
 * refuses it there too; a --socket before it is the socket it listens on. Call before any
 * command is added: the commands inherit positional options when they are made.
 */
export function commonOptions(program: Command): Command {
  return program
    .enablePositionalOptions()
    .addOption(new Option('--socket <path>', `daemon socket, for the command that follows (a client's default: $${SOCKET_ENV}, else ${shownDefault(defaultSocketPath())})`))
    .option('--json', 'print one JSON value on stdout (errors too), for the client command that follows')
    .hook('preAction', (_program, command) => {
      for (const key of COMMON_OPTIONS) {
        if (program.getOptionValueSource(key) !== 'cli') continue;
        if (!command.options.some((o) => o.attributeName() === key)) {
          throw new BlocksnapError('InvalidArgument', `blocksnap ${commandPath(command)} takes no --${key}`);
        }
        if (command.getOptionValueSource(key) === 'cli') continue;
        command.setOptionValueWithSource(key, program.getOptionValue(key), 'cli');
      }
    });
}

/** "disk add" for the command `add` of `disk`. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Adds --no-wait and --detach-on-interrupt to a command that runs a job. */
export function jobOptions(cmd: Command): Command {
  return detachOption(clientOptions(cmd).option('--no-wait', 'print the started job and return at once'));
}

/** Adds --detach-on-interrupt to a command that waits for the job(s) it starts. */
export function detachOption(cmd: Command, what = 'the job'): Command {
  return cmd.option('--detach-on-interrupt', `on Ctrl-C without a terminal, or SIGTERM, leave ${what} running instead of cancelling ${what === 'the job' ? 'it' : 'them'}`);
}

/** Connects, runs `fn`, disconnects. */
export async function withClient<T>(flags: ClientFlags, fn: (client: DaemonClient, out: Output) => Promise<T>): Promise<T> {
  const out = createOutput(flags.json === true);
  // A path past the sun_path limit would be cut short by connect() and reported as no daemon there.
  const socketPath = checkSocketPath(clientSocketPath(flags.socket));
  const client = await DaemonClient.connect({ socketPath, clientName: `blocksnap-cli/${PACKAGE_VERSION}` });
  try {
    return await fn(client, out);
  } finally {
    client.close();
  }
}

/**
 * Starts a job with `method` and either returns it as started (--no-wait) or follows it to the
 * end. Returns null when not waiting (the job was printed already), else the finished job.
 * `cancelNote` says what cancelling this job would leave, for the Ctrl-C prompt.
 */
export async function runJob(
  client: DaemonClient,
  out: Output,
  flags: JobFlags,
  method: string,
  params: Record<string, unknown>,
  label: string,
  o: { cancelNote?: (job: Job) => Promise<string | null> } = {},
): Promise<Job | null> {
  const early = flags.wait ? noteEarlyInterrupt() : null;
  try {
    const job = await client.call<Job>(method, { ...params, wait: false });
    if (!flags.wait) {
      out.result(job, (j) => `Started job ${j.id} (${j.kind}); follow it with: blocksnap job wait ${j.id}`);
      return null;
    }
    const cancelNote = o.cancelNote ? await o.cancelNote(job) : null;
    return await followJob(client, job, {
      label, detachOnInterrupt: flags.detachOnInterrupt === true, interruptedBefore: early!.interrupted, ...(cancelNote !== null ? { cancelNote } : {}),
    });
  } finally {
    early?.dispose();
  }
}

/** The text of an "Examples:" help section. */
export function examples(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}
