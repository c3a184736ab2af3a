/**
 * Default locations, shared by the daemon and the CLI so that both find the same socket without
 * configuration. Root gets the FHS locations; other users get per-user ones (XDG), so a user can
 * run a private daemon on their own images.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BlocksnapError } from '../errors';

export const SOCKET_ENV = 'BLOCKSNAP_SOCKET';
/** sun_path is 108 bytes on Linux, including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

interface Who {
  env: NodeJS.ProcessEnv;
  uid: number;
}

function current(): Who {
  return { env: process.env, uid: typeof process.getuid === 'function' ? process.getuid() : -1 };
}

/**
 * A default path and where it came from, for the message when it cannot be created: a daemon
 * started with `su` or from cron often has a HOME or XDG_RUNTIME_DIR that names nothing it may
 * create, and the raw errno names neither the variable nor the option that would fix it.
 */
export interface DefaultPath {
  path: string;
  /** The variable (and its value) or rule the path was made from. */
  from: string;
  /** What to pass or set instead. */
  instead: string;
}

function userDataDir(env: NodeJS.ProcessEnv): DefaultPath {
  const xdg = env.XDG_DATA_HOME;
  const instead = 'pass --data-dir DIR, or set XDG_DATA_HOME to a directory the daemon\'s user may create';
  if (xdg !== undefined && xdg.startsWith('/')) return { path: join(xdg, 'blocksnap'), from: `$XDG_DATA_HOME/blocksnap, XDG_DATA_HOME=${xdg}`, instead };
  const home = env.HOME !== undefined && env.HOME !== '' ? `HOME=${env.HOME}` : 'the home directory in the user database';
  const base = homeDir();
  // A container's arbitrary uid often has neither: there is then no default, and only what
  // needs the path says so (`--help` must still print).
  if (base === null) return { path: '', from: 'no home directory: HOME is not set and this uid has no entry in the user database', instead };
  return { path: join(base, '.local', 'share', 'blocksnap'), from: `~/.local/share/blocksnap, ${home}`, instead };
}

function homeDir(): string | null {
  try {
    const h = homedir();
    return h === '' ? null : h;
  } catch {
    return null;
  }
}

/** A default as `--help` shows it: there may be none. */
export function shownDefault(p: string): string {
  return p === '' ? 'none, as there is no home directory' : p;
}

/** Refuses a default that does not exist (userDataDir), naming why and what to pass. */
export function existingDefault(d: DefaultPath, what: string): string {
  if (d.path === '') throw new BlocksnapError('InvalidArgument', `there is no default ${what}: ${d.from}; ${d.instead}`);
  return d.path;
}

export function defaultDataDirOf(who: Who = current()): DefaultPath {
  return who.uid === 0 ? { path: '/var/lib/blocksnap', from: "root's default", instead: 'pass --data-dir DIR' } : userDataDir(who.env);
}

export function defaultDataDir(who: Who = current()): string {
  return defaultDataDirOf(who).path;
}

export function defaultSocketOf(who: Who = current()): DefaultPath {
  if (who.uid === 0) return { path: '/run/blocksnap/blocksnap.sock', from: "root's default", instead: 'pass --socket PATH' };
  const runtime = who.env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime.startsWith('/')) {
    return {
      path: join(runtime, 'blocksnap', 'blocksnap.sock'),
      from: `$XDG_RUNTIME_DIR/blocksnap, XDG_RUNTIME_DIR=${runtime}`,
      // su and sudo keep the caller's XDG_RUNTIME_DIR, which names a directory of another user.
      instead: 'pass --socket PATH, or unset XDG_RUNTIME_DIR if it is not this user\'s runtime directory (after su or sudo) to put the socket in the data directory',
    };
  }
  // Without a runtime dir (no login session), the per-user data dir is the one private place we know.
  const data = userDataDir(who.env);
  if (data.path === '') return { ...data, instead: 'pass --socket PATH' };
  return { path: join(data.path, 'blocksnap.sock'), from: `the default data directory, as XDG_RUNTIME_DIR is not set: ${data.from}`, instead: 'pass --socket PATH' };
}

export function defaultSocketPath(who: Who = current()): string {
  return defaultSocketOf(who).path;
}

/** The socket a client uses: --socket, else $BLOCKSNAP_SOCKET, else the default. */
export function clientSocketPath(option: string | undefined, who: Who = current()): string {
  if (option !== undefined && option !== '') return option;
  const env = who.env[SOCKET_ENV];
  if (env !== undefined && env !== '') return env;
  const d = defaultSocketOf(who);
  return d.path === '' ? existingDefault({ ...d, instead: `pass --socket PATH or set ${SOCKET_ENV}` }, 'daemon socket') : d.path;
}

export function checkSocketPath(path: string): string {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new BlocksnapError('InvalidArgument', `socket path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes (the Unix socket limit)`);
  }
  return path;
}
