/**
 * Running the real daemon and clients as users other than root, for the checks that only another
 * uid can make: which files another user may read, whose socket may be removed. Tests run as root
 * in CI; the uids need no account (the kernel checks numbers only), so nothing is added to the
 * host. Elsewhere, or where those uids cannot read the build, the tests skip saying why.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { BIN, ensureBuilt } from '../integration/fixtures/harness';

/** Two users that share a primary group (like `users`), and a third outside it. */
export const USER_A = { uid: 23456, gid: 23400 };
export const USER_B = { uid: 23457, gid: 23400 };
export const USER_C = { uid: 23458, gid: 23458 };

export interface Who { uid: number; gid: number }

/** False where the tests can run as other users, else the reason they skip. */
export function asUserSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to run the daemon as another user';
  ensureBuilt();
  const r = spawnSync(process.execPath, [BIN, '--version'], { ...USER_A, encoding: 'utf8', env: cleanEnv({}) });
  return r.status === 0 ? false : `uid ${USER_A.uid} cannot run ${BIN} (is the checkout readable by other users?): ${r.stderr}`;
}

/**
 * A login-less environment, as cron, `su` or a system service gives: no XDG_* variables. HOME is
 * always set, to a path that does not exist unless given: these uids have no account to take a
 * home from, and the CLI computes its default paths from it.
 */
export function cleanEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env };
}

/** `blocksnap daemon ARGS` as `who`, in `cwd` (the default image root). */
export function spawnDaemonAs(who: Who, args: string[], env: NodeJS.ProcessEnv, cwd: string): ChildProcess & { log(): string } {
  const proc = spawn(process.execPath, [BIN, 'daemon', '--log-level', 'info', ...args], { ...who, cwd, env: cleanEnv(env), stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (c: Buffer) => { log += c.toString(); });
  return Object.assign(proc, { log: () => log });
}

/** Runs the daemon as `who` until it exits; for refusals at start. */
export function runDaemonAs(who: Who, args: string[], env: NodeJS.ProcessEnv, cwd: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'daemon', '--log-level', 'silent', ...args], { ...who, cwd, env: cleanEnv(env), encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stderr: r.stderr };
}

/** Connects to a Unix socket as `who`: "connected" or the errno code. */
export function connectAs(who: Who, socketPath: string): string {
  const script = `const s=require('net').connect(${JSON.stringify(socketPath)});` +
    `s.on('connect',()=>{process.stdout.write('connected');s.destroy()});s.on('error',e=>process.stdout.write(e.code))`;
  // A node start on a loaded machine can take seconds: only a hang should reach the timeout.
  const r = spawnSync(process.execPath, ['-e', script], { ...who, encoding: 'utf8', timeout: 60_000 });
  return r.stdout || `connect failed: ${r.stderr || r.error?.message}`;
}

/** A socket file of `who` that nothing listens on (its process was killed), with `mode`. */
export function staleSocketOf(who: Who, path: string, mode: number): void {
  const script = `process.umask(${0o777 & ~mode});require('net').createServer().listen(process.argv[1],()=>process.kill(process.pid,'SIGKILL'))`;
  spawnSync(process.execPath, ['-e', script, path], { ...who, timeout: 60_000 });
}

/** A scratch dir others may search, with a home (and images in it) owned by USER_A. */
export function scratch(t: Test): { dir: string; home: string; images: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bsnr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const home = join(dir, 'home');
  const images = join(home, 'images');
  mkdirSync(images, { recursive: true });
  for (const d of [home, images]) chownSync(d, USER_A.uid, USER_A.gid);
  return { dir, home, images };
}

/** Resolves once the daemon answers on `socketPath` (root may connect whatever its mode). */
async function listening(d: ReturnType<typeof spawnDaemonAs>, socketPath: string): Promise<void> {
  for (let i = 0; ; i++) {
    if (d.exitCode !== null) throw new Error(`daemon exited ${d.exitCode}:\n${d.log()}`);
    try {
      (await DaemonClient.connect({ socketPath, connectTimeoutMs: 1000 })).close();
      return;
    } catch {
      if (i > 1200) throw new Error(`daemon did not come up:\n${d.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** `blocksnap daemon ARGS` as `who`, answering on `socketPath`; killed at teardown. */
export async function startedAs(t: Test, who: Who, args: string[], env: NodeJS.ProcessEnv, cwd: string, socketPath: string) {
  const d = spawnDaemonAs(who, args, env, cwd);
  const exited = new Promise((r) => d.once('exit', r));
  t.teardown(async () => {
    if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
    await exited;
  });
  await listening(d, socketPath);
  return d;
}
