import { InvalidArgumentError, Option, type Command } from 'commander';
import { CONFIG_FILE_KEYS, DEFAULT_BLOCK_FILE_IDLE_SECONDS, LOG_LEVELS, type DaemonFlags } from '../../daemon/config';
import { defaultDataDir, defaultSocketPath, shownDefault } from '../../daemon/paths';
import { examples } from '../context';

function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < 1) {
    throw new InvalidArgumentError('must be a positive integer');
  }
  return Number(value);
}

function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('must be a whole number');
  return Number(value);
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

type ConfigKey = (typeof CONFIG_FILE_KEYS)[number];

/** Keys no option sets: no option help explains them, so this does. */
const FILE_ONLY: Partial<Record<ConfigKey, string[]>> = {
  blockSize: ['bytes per block of a new data directory: a power of two from 65536 to 67108864',
    '(default 4194304, 4 MiB); a data directory keeps the block size it was created with'],
  threads: ['native worker threads per job, 1 to 256 (default: one per core)'],
};

/** Lists every key of the config file, so that a key added there cannot go unmentioned here. */
function configHelp(): string {
  const lines: string[] = [];
  let line = ' ';
  for (const k of CONFIG_FILE_KEYS.filter((key) => FILE_ONLY[key] === undefined)) {
    if (line.length + k.length > 94) {
      lines.push(`${line},`);
      line = ' ';
    }
    line += `${line === ' ' ? ' ' : ', '}${k}`;
  }
  lines.push(line);
  const only = Object.entries(FILE_ONLY).flatMap(([k, text]) => text!.map((t, i) => `  ${(i === 0 ? k : '').padEnd(10)} ${t}`));
  return '\nThe --config file is one JSON object; relative paths in it are relative to the file. These keys\n' +
    'set what the option of the same name does (imageRoots: an array of directories):\n' +
    `${lines.join('\n')}\nand these only the file sets:\n${only.join('\n')}\n` +
    'For example: {"dataDir": "/var/lib/blocksnap", "imageRoots": ["/var/lib/libvirt/images"], "threads": 4}\n';
}

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('run the daemon in the foreground until SIGTERM, SIGINT or SIGHUP, each of which stops it cleanly')
    .option('--config <file>', 'JSON file with the same settings (the command line wins)')
    .option('--data-dir <dir>', `catalog and block store (default: ${shownDefault(defaultDataDir())})`)
    .option('--socket <path>', `Unix socket to listen on (default: ${shownDefault(defaultSocketPath())})`)
    .option('--image-root <dir>', 'directory images may be registered in and cloned into; repeatable; never / (default: the working directory)', collect)
    .option('--nbd-socket <path>', 'also serve NBD exports on this Unix socket (same mode and group as --socket)')
    .option('--socket-group <group>', 'group whose members may use the socket (mode 0660); without it only the daemon\'s user may')
    .option('--socket-mode <mode>', 'octal permission bits of the socket files (default: 0660 with --socket-group, else 0600)')
    .addOption(new Option('--log-level <level>', 'log level (default: info)').choices(LOG_LEVELS as unknown as string[]))
    .option('--max-frame-bytes <n>', 'largest request frame accepted (default: 1048576)', positiveInt)
    .option('--max-connections <n>', 'most clients at once (default: 1024)', positiveInt)
    .option('--max-connections-per-user <n>', 'most clients of one user (peer uid) at once (default: 256, at most --max-connections)', positiveInt)
    .option('--idle-timeout <seconds>', 'disconnect a client with no request running, no job watched and no stream open for this long; 0: never (default: 900)', nonNegativeInt)
    .option('--block-file-idle <seconds>', `close a block file a served export or copy-on-write disk keeps open once no read has used it for this long, 1 to 86400 (default: ${DEFAULT_BLOCK_FILE_IDLE_SECONDS})`, positiveInt)
    .option('--manual-snapshot-quota <n>', 'manual snapshots per disk (default: 256)', positiveInt)
    .option('--auto-snapshot-quota <n>', 'automatic snapshots per disk; over it, once a new one is available, failed then oldest automatic ones go (default: 256)', positiveInt)
    .option('--new-catalog', 'create a new, empty catalog where the data dir has none but its block store holds blocks (refused otherwise: CatalogMissing); deleting blocks then waits for store accept-catalog. Give it for one start only')
    .addHelpText('after', examples([
      'blocksnap daemon --data-dir /var/lib/blocksnap --image-root /var/lib/libvirt/images',
      'blocksnap daemon --config /etc/blocksnap.json --log-level debug',
    ]) + '\nLogs are JSON lines on stderr. Only one daemon may use a data directory at a time.\n' +
      'On a terminal that may close, run it under systemd or detached (setsid -f blocksnap daemon … < /dev/null >> LOG 2>&1):\n' +
      'once its terminal has gone, Node.js cannot exit cleanly and may leave the socket behind for the next start to remove.\n' +
      'A start refused for good (a bad option or config, a file that is not a socket at a socket path, a\n' +
      'directory another user may write, a missing or damaged catalog beside a store of blocks, a catalog\n' +
      'a newer blocksnap wrote) exits 2; one another daemon holds up (its data dir or socket) exits 1.\n' + configHelp())
    .action(async (flags: DaemonFlags) => {
      // Loaded only here: client commands never load the engine, LMDB or the native addon.
      const { runDaemon } = await import('../../daemon/run');
      process.exit(await runDaemon(flags));
    });
}
