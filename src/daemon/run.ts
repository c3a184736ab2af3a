/**
 * `blocksnap daemon`: the process lifecycle. Start order is chosen so that failures are cheap and
 * clear: settings, then the socket path (is another daemon there?), then the engine (which locks
 * the data dir and recovers from a crash), and only then listen, so that no client ever reaches a
 * daemon whose engine is not open. Stop order: refuse new work, close the engine (it cancels jobs
 * at a safe point, which answers every waiting client), close the connections, exit 0.
 * SIGHUP stops it as SIGTERM does, as `kill -HUP` sends it: left to its default it would kill the
 * daemon mid-job with no log line and its sockets left behind. It also comes when the terminal or
 * ssh session of a daemon started in the foreground goes away, but then the daemon's stdio is a
 * hung-up tty and Node.js itself aborts on exit (restoring the tty's modes fails), so the README
 * sends such daemons to systemd or `setsid`. There is nothing to reload: settings are read at start.
 */
import { constants } from 'node:os';
import type { Logger } from 'pino';
import { toBlocksnapError, type BlocksnapError } from '../errors';
import { EXIT, exitStatusFor } from '../cli/exit-status';
import { Engine } from '../engine';
import { Scheduler } from '../scheduler/scheduler';
import { PACKAGE_VERSION, buildId } from './build-info';
import { resolveConfig, type DaemonConfig, type DaemonFlags } from './config';
import { DEFAULT_LIMITS } from './connection';
import { createLogger } from './logger';
import { DaemonServer } from './server';
import { checkSocketGroup, claimSocketPath, refuseTakenSocketPath, resolveGroup } from './socket-file';
import { makeDataDir, makeSocketDir } from './start-dirs';
import { openSocketModeWarning, unreachableSocketWarning } from './socket-warnings';
import { checkDataDirTrusted, checkSocketDirTrusted } from './trusted-dirs';
import { NbdServer } from '../nbd/server';
import { hardLinkWarning } from './hard-link-guard';
import { ownFdLimitWarning } from './fd-limit';
import { FdExhaustionLog } from './fd-exhaustion-log';
import { startIdleBlockFileSweep } from './idle-block-files';

/** How long closing the connections may take after the engine stopped. */
const CONNECTION_CLOSE_TIMEOUT_MS = 5_000;

/** The signals that stop the daemon cleanly. */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** Exit statuses of the daemon process. */
export const DAEMON_EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function say(message: string): void {
  process.stderr.write(`blocksnap daemon: ${message}\n`);
}

/** Runs the daemon in the foreground; resolves with the exit status once it stopped. */
export async function runDaemon(flags: DaemonFlags): Promise<number> {
  let config: DaemonConfig;
  let gid: number | undefined;
  try {
    config = resolveConfig(flags);
    gid = config.socketGroup !== undefined ? resolveGroup(config.socketGroup) : undefined;
  } catch (err) {
    const e = toBlocksnapError(err);
    // The log level is among the settings refused: a refusal is logged whatever it would have been,
    // so that a pipeline that reads only the JSON lines still sees why the daemon did not start.
    createLogger('info').fatal({ code: e.code }, e.message);
    say(`${e.message} [${e.code}]`);
    return DAEMON_EXIT.usage;
  }
  const log = createLogger(config.logLevel);
  installProcessGuards(log);
  // From the start: the engine's recovery and the first clients may already run out.
  new FdExhaustionLog(log).start();

  log.info({ version: PACKAGE_VERSION, build: buildId(), dataDir: config.dataDir, socket: config.socketPath, imageRoots: config.imageRoots }, 'starting');
  if (config.imageRootsDefaulted) {
    log.warn({ imageRoot: config.imageRoots[0] }, 'no --image-root given: the working directory is the only image root');
  }
  const openMode = openSocketModeWarning(config.socketMode, config.nbdSocket !== undefined);
  if (openMode !== null) log.warn({ mode: config.socketMode.toString(8) }, openMode);
  const hardLinks = hardLinkWarning();
  if (hardLinks !== null) log.warn(hardLinks);
  const fds = ownFdLimitWarning(config.maxConnections);
  if (fds !== null) log.warn({ limit: fds.limit, needed: fds.needed }, fds.message);

  // Checked before the engine opens: refusing here is cheaper than a crash recovery first, and
  // before the data dir is made, so that a refused start leaves none (with its block size fixed).
  const sockets: Array<['--socket' | '--nbd-socket', string]> = [['--socket', config.socketPath]];
  if (config.nbdSocket !== undefined) sockets.push(['--nbd-socket', config.nbdSocket]);
  for (const [option, socket] of sockets) {
    try {
      await refuseTakenSocketPath(socket);
    } catch (err) {
      return startFailed(log, err, config, option);
    }
  }
  let engine: Engine;
  try {
    prepareDirs(config, gid, log);
    const { removedStale } = await claimSocketPath(config.socketPath);
    if (removedStale) log.info({ socket: config.socketPath }, 'removed a stale socket file');
    const engineOptions: Parameters<typeof Engine.open>[0] = {
      dataDir: config.dataDir,
      imageRoots: config.imageRoots,
      logger: log.child({ component: 'engine' }),
    };
    if (config.blockSize !== undefined) engineOptions.blockSize = config.blockSize;
    if (config.threads !== undefined) engineOptions.threads = config.threads;
    if (config.newCatalog) engineOptions.newCatalog = true;
    const quota: { manual?: number; auto?: number } = {};
    if (config.manualSnapshotQuota !== undefined) quota.manual = config.manualSnapshotQuota;
    if (config.autoSnapshotQuota !== undefined) quota.auto = config.autoSnapshotQuota;
    engineOptions.snapshotQuota = quota;
    engine = await Engine.open(engineOptions);
  } catch (err) {
    return startFailed(log, err, config);
  }
  // NBD first: once the control socket answers, `export start` must find the NBD server there.
  let nbd: NbdServer | null = null;
  if (config.nbdSocket !== undefined) {
    nbd = new NbdServer(engine.exports, { socketPath: config.nbdSocket, socketMode: config.socketMode, ...(gid !== undefined ? { socketGid: gid } : {}) },
      log.child({ component: 'nbd' }));
    try {
      await nbd.listen();
    } catch (err) {
      await engine.close().catch((e: unknown) => log.error({ err: e }, 'closing the engine failed'));
      return startFailed(log, err, config, '--nbd-socket');
    }
    engine.exports.setEndpoint(config.nbdSocket);
  }
  const info = { version: PACKAGE_VERSION, build: buildId(), pid: process.pid, startedAt: new Date().toISOString() };
  const server = new DaemonServer(engine, info, {
    socketPath: config.socketPath,
    socketMode: config.socketMode,
    ...(gid !== undefined ? { socketGid: gid } : {}),
    maxConnections: config.maxConnections,
    maxConnectionsPerUser: config.maxConnectionsPerUser,
    limits: { ...DEFAULT_LIMITS, maxFrameBytes: config.maxFrameBytes, idleTimeoutMs: config.idleTimeoutSeconds * 1000 },
  }, log);
  try {
    await server.listen();
  } catch (err) {
    await nbd?.close();
    await engine.close().catch((e: unknown) => log.error({ err: e }, 'closing the engine failed'));
    return startFailed(log, err, config);
  }
  if (nbd) log.info({ nbdSocket: config.nbdSocket }, 'serving NBD');
  log.info({ socket: config.socketPath, mode: config.socketMode.toString(8), group: config.socketGroup ?? null }, 'listening');
  const scheduler = new Scheduler(engine.policies, { log: log.child({ component: 'scheduler' }) });
  scheduler.start();
  const stopFileSweep = startIdleBlockFileSweep(config.blockFileIdleSeconds * 1000, log.child({ component: 'volumes' }));

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // Every on-disk state is crash-safe, so an impatient second signal may cut the shutdown short.
        log.warn({ signal }, 'second signal: exiting without waiting for jobs to stop');
        process.exit(128 + constants.signals[signal]);
      }
      stopping = true;
      log.info({ signal }, 'shutting down');
      stopFileSweep();
      void scheduler.stop().then(() => stop(engine, server, nbd, log)).then(resolve);
    };
    for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  });
}

async function stop(engine: Engine, server: DaemonServer, nbd: NbdServer | null, log: Logger): Promise<number> {
  server.stopAccepting();
  // NBD clients are dropped first: their exports pin snapshots the engine is about to close over.
  await nbd?.close();
  let status: number = DAEMON_EXIT.ok;
  try {
    await engine.close();
  } catch (err) {
    log.error({ err }, 'closing the engine failed');
    status = DAEMON_EXIT.failed;
  }
  const timeout = new Promise<void>((r) => setTimeout(r, CONNECTION_CLOSE_TIMEOUT_MS).unref());
  await Promise.race([server.closeConnections(), timeout]);
  log.info({ status }, 'stopped');
  return status;
}

/**
 * Creates the data dir and the sockets' directories, and refuses ones another user controls or a
 * socket group the daemon cannot give its sockets to, all before anything else is created.
 */
function prepareDirs(config: DaemonConfig, gid: number | undefined, log: Logger): void {
  if (gid !== undefined) checkSocketGroup(config.socketGroup!, gid, [config.socketPath, ...(config.nbdSocket !== undefined ? [config.nbdSocket] : [])]);
  makeDataDir(config.dataDir, config.dataDirDefault);
  checkDataDirTrusted(config.dataDir);
  makeSocketDir(config.socketPath, config.socketDefault, '--socket');
  checkSocketDirTrusted(config.socketPath, '--socket');
  if (config.nbdSocket !== undefined) {
    makeSocketDir(config.nbdSocket, undefined, '--nbd-socket');
    checkSocketDirTrusted(config.nbdSocket, '--nbd-socket');
  }
  const group = gid !== undefined ? { name: config.socketGroup!, gid } : undefined;
  for (const socket of [config.socketPath, config.nbdSocket]) {
    if (socket === undefined) continue;
    const unreachable = unreachableSocketWarning(socket, config.socketMode, group);
    if (unreachable !== null) log.warn({ socket, group: config.socketGroup ?? null }, unreachable);
  }
}

/**
 * A refusal that a restart cannot mend: the command line, the config or the filesystem must be
 * changed first. Exit 2 tells a service manager so (RestartPreventExitStatus=2 in the README's
 * unit). Another daemon on the data dir or the socket (DataDirLocked, a live SocketInUse) may go
 * away, and an I/O error may pass: those exit 1 and are retried.
 */
function refusedForGood(e: BlocksnapError): boolean {
  if (exitStatusFor(e.code) === EXIT.usage) return true; // a bad --image-root or --data-dir, as the CLI reports it
  if (e.code === 'UntrustedPath') return true;
  // The catalog must be put back (or --new-catalog given), or a newer blocksnap installed: a
  // restart finds it as it was.
  if (e.code === 'CatalogMissing' || e.code === 'CatalogDamaged' || e.code === 'CatalogVersion') return true;
  return e.code === 'SocketInUse' && e.details?.found !== undefined; // a file, not a daemon, at the socket path
}

/** `socketOption`: the option that names the socket whose claim failed, for a SocketInUse. */
function startFailed(log: Logger, err: unknown, config: DaemonConfig, socketOption: '--socket' | '--nbd-socket' = '--socket'): number {
  const e = toBlocksnapError(err);
  let message = e.message;
  if (e.code === 'DataDirLocked') message = `another blocksnap daemon is already using the data directory ${config.dataDir} (${e.message})`;
  // A socket of another user the daemon may neither probe nor remove: only another path helps.
  if (e.code === 'PermissionDenied' && e.details?.owner !== undefined) message = `${e.message}; choose another path with ${socketOption}`;
  if (e.code === 'SocketInUse') {
    // Something other than a socket is at the path: no daemon is involved, the path is wrong.
    message = e.details?.found !== undefined
      ? `${e.message}; name a path for the socket with ${socketOption} (a socket is never created through a symbolic link or over another file)`
      : `${e.message}; is another blocksnap daemon running? Use ${socketOption} to choose another path`;
  }
  log.fatal({ code: e.code, err: e.code === 'Internal' ? err : undefined }, message);
  say(`${message} [${e.code}]`);
  return refusedForGood(e) ? DAEMON_EXIT.usage : DAEMON_EXIT.failed;
}

/**
 * A bug in one request must not take the daemon down with it: every handler is already wrapped,
 * so anything that still escapes is logged and the daemon keeps serving. The engine keeps its
 * on-disk state crash-consistent, so continuing is no riskier than the crash would have been.
 */
function installProcessGuards(log: Logger): void {
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled promise rejection (ignored)'));
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (ignored)'));
  // A client that vanishes mid-write must not kill the daemon with SIGPIPE; Node ignores it, say so.
  process.on('SIGPIPE', () => undefined);
}
