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

function userDataDir(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_DATA_HOME;
  return join(xdg !== undefined && xdg.startsWith('/') ? xdg : join(homedir(), '.local', 'share'), 'blocksnap');
}

export function defaultDataDir(who: Who = current()): string {
  return who.uid === 0 ? '/var/lib/blocksnap' : userDataDir(who.env);
}

export function defaultSocketPath(who: Who = current()): string {
  if (who.uid === 0) return '/run/blocksnap/blocksnap.sock';
  const runtime = who.env.XDG_RUNTIME_DIR;
  // Without a runtime dir (no login session), the per-user data dir is the one private place we know.
  return join(runtime !== undefined && runtime.startsWith('/') ? join(runtime, 'blocksnap') : userDataDir(who.env), 'blocksnap.sock');
}

/** The socket a client uses: --socket, else $BLOCKSNAP_SOCKET, else the default. */
export function clientSocketPath(option: string | undefined, who: Who = current()): string {
  if (option !== undefined && option !== '') return option;
  const env = who.env[SOCKET_ENV];
  return env !== undefined && env !== '' ? env : defaultSocketPath(who);
}

export function checkSocketPath(path: string): string {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new BlocksnapError('InvalidArgument', `socket path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes (the Unix socket limit)`);
  }
  return path;
}
