/**
 * Daemon settings from three sources, later ones winning: built-in defaults, a JSON config file
 * (--config), and the command line. Relative paths in the config file are relative to the file,
 * on the command line relative to the working directory.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BlocksnapError } from '../errors';
import { isPlainMap } from './protocol/messages';
import { DEFAULT_MAX_FRAME_BYTES, ABSOLUTE_MAX_FRAME_BYTES } from './protocol/frame';
import { integer, oneOf, optional, string, validateParams, type Field, type ParamsOf } from './params';
import { checkSocketPath, defaultDataDirOf, defaultSocketOf, existingDefault, type DefaultPath } from './paths';
import { DEFAULT_SOCKET_MODE, GROUP_SOCKET_MODE } from './socket-file';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface DaemonConfig {
  dataDir: string;
  /** Where the data dir came from when no option or config key named it (for messages). */
  dataDirDefault: DefaultPath | undefined;
  socketPath: string;
  /** Where the socket path came from when no option or config key named it. */
  socketDefault: DefaultPath | undefined;
  imageRoots: string[];
  /** True when no root was configured and the working directory became the only root. */
  imageRootsDefaulted: boolean;
  socketGroup: string | undefined;
  /** --socket-mode, else 0660 with a socket group and 0600 without one. */
  socketMode: number;
  /** Unix socket of the NBD server (same mode and group as the control socket); undefined: no NBD. */
  nbdSocket: string | undefined;
  logLevel: LogLevel;
  maxFrameBytes: number;
  maxConnections: number;
  /** At most maxConnections. */
  maxConnectionsPerUser: number;
  /** 0: idle clients are never disconnected. */
  idleTimeoutSeconds: number;
  /** How long a block file copy-on-write volumes keep open may go unread before it is closed. */
  blockFileIdleSeconds: number;
  blockSize: number | undefined;
  threads: number | undefined;
  /** Snapshots per disk; undefined keeps the engine's default (256 each). */
  manualSnapshotQuota: number | undefined;
  autoSnapshotQuota: number | undefined;
  /** --new-catalog: command line only, so that it is given for one start and not kept in a file. */
  newCatalog: boolean;
}

/** What the command line may set; every key is optional and overrides the config file. */
export interface DaemonFlags {
  config?: string;
  dataDir?: string;
  socket?: string;
  imageRoot?: string[];
  socketGroup?: string;
  socketMode?: string;
  nbdSocket?: string;
  logLevel?: string;
  maxFrameBytes?: number;
  maxConnections?: number;
  maxConnectionsPerUser?: number;
  idleTimeout?: number;
  blockFileIdle?: number;
  manualSnapshotQuota?: number;
  autoSnapshotQuota?: number;
  newCatalog?: boolean;
}

const stringList: Field<string[]> = {
  expected: 'an array of strings',
  optional: false,
  accepts: (v): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string' && s.length > 0),
};
const octalMode: Field<string> = {
  expected: 'an octal mode string such as "0660"',
  optional: false,
  accepts: (v): v is string => typeof v === 'string' && /^[0-7]{3,4}$/.test(v),
};

/** The longest --block-file-idle: a day. */
const MAX_BLOCK_FILE_IDLE_SECONDS = 24 * 3600;
/** Long enough that a guest reading now and then does not reopen its files each time. */
export const DEFAULT_BLOCK_FILE_IDLE_SECONDS = 30;

const FILE_SHAPE = {
  dataDir: optional(string),
  socket: optional(string),
  nbdSocket: optional(string),
  imageRoots: optional(stringList),
  socketGroup: optional(string),
  socketMode: optional(octalMode),
  logLevel: optional(oneOf(...LOG_LEVELS)),
  maxFrameBytes: optional(integer(1024, ABSOLUTE_MAX_FRAME_BYTES)),
  maxConnections: optional(integer(1, 65_536)),
  maxConnectionsPerUser: optional(integer(1, 65_536)),
  idleTimeout: optional(integer(0, 7 * 24 * 3600)),
  blockFileIdle: optional(integer(1, MAX_BLOCK_FILE_IDLE_SECONDS)),
  blockSize: optional(integer(64 * 1024, 64 * 1024 * 1024)),
  threads: optional(integer(1, 256)),
  manualSnapshotQuota: optional(integer(1, 65_536)),
  autoSnapshotQuota: optional(integer(1, 65_536)),
};

/** The keys a config file may hold; `daemon --help` lists them from here. */
export const CONFIG_FILE_KEYS = Object.keys(FILE_SHAPE) as ReadonlyArray<keyof typeof FILE_SHAPE>;

function readConfigFile(file: string): ParamsOf<typeof FILE_SHAPE> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BlocksnapError('InvalidArgument', `cannot read config file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new BlocksnapError('InvalidArgument', `config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainMap(parsed)) throw new BlocksnapError('InvalidArgument', `config file ${file} must hold a JSON object`);
  return validateParams(FILE_SHAPE, parsed, 'config');
}

/** Merges defaults, the config file and flags. `cwd` is the default image root. */
export function resolveConfig(flags: DaemonFlags, cwd: string = process.cwd()): DaemonConfig {
  const file = flags.config !== undefined ? readConfigFile(resolve(cwd, flags.config)) : {};
  const fileDir = flags.config !== undefined ? dirname(resolve(cwd, flags.config)) : cwd;
  const fromFile = (p: string | undefined): string | undefined => (p === undefined ? undefined : resolve(fileDir, p));
  const fromFlag = (p: string | undefined): string | undefined => (p === undefined ? undefined : resolve(cwd, p));

  const flagRoots = flags.imageRoot !== undefined && flags.imageRoot.length > 0 ? flags.imageRoot.map((r) => resolve(cwd, r)) : undefined;
  const fileRoots = file.imageRoots?.map((r) => resolve(fileDir, r));
  const roots = flagRoots ?? fileRoots;
  refuseWholeFilesystem(roots, cwd);

  const logLevel = flags.logLevel ?? file.logLevel ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new BlocksnapError('InvalidArgument', `--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const modeText = flags.socketMode ?? file.socketMode;
  if (modeText !== undefined && !octalMode.accepts(modeText)) {
    throw new BlocksnapError('InvalidArgument', `--socket-mode must be ${octalMode.expected}`);
  }
  if (modeText !== undefined && modeText.length === 4 && modeText[0] !== '0') {
    throw new BlocksnapError('InvalidArgument', `--socket-mode ${modeText} is refused: setuid, setgid and sticky bits mean nothing on a socket; give the permission bits only, such as "0660"`);
  }
  const maxFrameBytes = flags.maxFrameBytes ?? file.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1024 || maxFrameBytes > ABSOLUTE_MAX_FRAME_BYTES) {
    throw new BlocksnapError('InvalidArgument', `--max-frame-bytes must be an integer from 1024 to ${ABSOLUTE_MAX_FRAME_BYTES}`);
  }

  const maxConnections = flags.maxConnections ?? file.maxConnections ?? 1024;
  const idleTimeoutSeconds = flags.idleTimeout ?? file.idleTimeout ?? 900;
  if (!Number.isSafeInteger(idleTimeoutSeconds) || idleTimeoutSeconds < 0 || idleTimeoutSeconds > 7 * 24 * 3600) {
    throw new BlocksnapError('InvalidArgument', `--idle-timeout must be a whole number of seconds from 0 to ${7 * 24 * 3600}`);
  }

  const blockFileIdleSeconds = flags.blockFileIdle ?? file.blockFileIdle ?? DEFAULT_BLOCK_FILE_IDLE_SECONDS;
  if (!Number.isSafeInteger(blockFileIdleSeconds) || blockFileIdleSeconds < 1 || blockFileIdleSeconds > MAX_BLOCK_FILE_IDLE_SECONDS) {
    throw new BlocksnapError('InvalidArgument', `--block-file-idle must be a whole number of seconds from 1 to ${MAX_BLOCK_FILE_IDLE_SECONDS}`);
  }

  const dataDir = fromFlag(flags.dataDir) ?? fromFile(file.dataDir);
  const socket = fromFlag(flags.socket) ?? fromFile(file.socket);
  const dataDirDefault = dataDir === undefined ? defaultDataDirOf() : undefined;
  const socketDefault = socket === undefined ? defaultSocketOf() : undefined;
  const socketGroup = flags.socketGroup ?? file.socketGroup;
  const socketPath = checkSocketPath(socket ?? existingDefault(socketDefault!, 'socket'));
  return {
    dataDir: dataDir ?? existingDefault(dataDirDefault!, 'data directory'),
    dataDirDefault,
    socketPath,
    socketDefault,
    imageRoots: roots ?? [cwd],
    imageRootsDefaulted: roots === undefined,
    socketGroup,
    // Without a chosen group, the daemon's primary group would get the socket: often a shared one
    // (users, kvm), whose every member could then roll back the daemon's disks.
    socketMode: modeText !== undefined ? parseInt(modeText, 8) : socketGroup !== undefined ? GROUP_SOCKET_MODE : DEFAULT_SOCKET_MODE,
    nbdSocket: nbdSocketPath(fromFlag(flags.nbdSocket) ?? fromFile(file.nbdSocket), socketPath),
    logLevel: logLevel as LogLevel,
    maxFrameBytes,
    maxConnections,
    maxConnectionsPerUser: Math.min(maxConnections, flags.maxConnectionsPerUser ?? file.maxConnectionsPerUser ?? 256),
    idleTimeoutSeconds,
    blockFileIdleSeconds,
    blockSize: file.blockSize,
    threads: file.threads,
    manualSnapshotQuota: flags.manualSnapshotQuota ?? file.manualSnapshotQuota,
    autoSnapshotQuota: flags.autoSnapshotQuota ?? file.autoSnapshotQuota,
    newCatalog: flags.newCatalog === true,
  };
}

/**
 * `/` as an image root would let every socket user register, read and roll back any file on the
 * host (/etc/shadow, a setuid binary) with the daemon's rights; no host keeps its images there.
 * With no root configured it would be the working directory, which is `/` for a service started
 * with no WorkingDirectory= or for `sudo` from `/`. A root that leads to `/` by a symbolic link is
 * refused when the engine resolves it (engine/paths.ts).
 */
function refuseWholeFilesystem(roots: string[] | undefined, cwd: string): void {
  const why = 'every socket user could then read and overwrite any file on the host with the daemon\'s rights';
  if (roots === undefined && resolve(cwd) === '/') {
    throw new BlocksnapError('InvalidArgument',
      `no --image-root given and the working directory is /, which would be the image root: ${why}; name the directory that holds the images with --image-root (or imageRoots in the config file)`,
      { imageRoot: '/' });
  }
  if (roots?.includes('/') === true) {
    throw new BlocksnapError('InvalidArgument', `image root / is refused: ${why}; name the directory that holds the images`, { imageRoot: '/' });
  }
}

/** The NBD socket path, checked like the control socket's and never the same file. */
function nbdSocketPath(p: string | undefined, controlSocket: string): string | undefined {
  if (p === undefined) return undefined;
  const checked = checkSocketPath(p);
  if (checked === controlSocket) throw new BlocksnapError('InvalidArgument', '--nbd-socket must differ from --socket');
  return checked;
}
