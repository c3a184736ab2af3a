/**
 * The real daemon as a child process that a test may kill at any moment and start again on the
 * same data dir and socket. Unlike the integration harness, nothing here is tied to one tap test:
 * the crash, fault and soak runs restart the daemon hundreds of times and also run outside tap.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DaemonClient } from '../../src/daemon/client';
import { BIN, ensureBuilt } from '../integration/fixtures/harness';

export interface Layout {
  /** Holds everything below; removed by the caller. */
  dir: string;
  dataDir: string;
  imageRoot: string;
  socketPath: string;
  /** The daemon's JSON config file (block size, threads). */
  configPath: string;
}

/**
 * A fresh layout under `dir`. Small blocks keep rounds fast while every code path stays the
 * one a 4 MiB store takes; two threads match the CI machine.
 */
export function makeLayout(dir: string, o: { blockSize?: number; threads?: number; dataDir?: string } = {}): Layout {
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot, { recursive: true });
  const configPath = join(dir, 'daemon.json');
  writeFileSync(configPath, JSON.stringify({ blockSize: o.blockSize ?? 64 * 1024, threads: o.threads ?? 2 }));
  return { dir, dataDir: o.dataDir ?? join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock'), configPath };
}

export class DaemonProcess {
  private log = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly layout: Layout, readonly proc: ChildProcess) {
    proc.stderr!.on('data', (c: Buffer) => {
      this.log += c.toString();
      // Only the tail matters for diagnosis; a soak run must not grow the test's memory.
      if (this.log.length > 1_000_000) this.log = this.log.slice(-500_000);
    });
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Spawns `blocksnap daemon` on the layout; does not wait for it to listen. */
  static spawn(layout: Layout, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): DaemonProcess {
    const proc = spawn(process.execPath, [daemonBin(), 'daemon', '--config', layout.configPath, '--data-dir', layout.dataDir,
      '--socket', layout.socketPath, '--image-root', layout.imageRoot, '--log-level', 'info', ...extraArgs],
    { cwd: layout.imageRoot, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    return new DaemonProcess(layout, proc);
  }

  /** Spawns and resolves once the daemon answers hello. */
  static async start(layout: Layout, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
    const d = DaemonProcess.spawn(layout, extraArgs, env);
    await d.ready();
    return d;
  }

  get pid(): number { return this.proc.pid!; }
  get alive(): boolean { return this.proc.exitCode === null && this.proc.signalCode === null; }
  stderr(): string { return this.log; }

  /** Resolves once the daemon answers on its socket; rejects if it exits first. Generous: start-up
   * fsyncs the catalog, and on a shared machine an fsync can wait behind others' writeback. */
  async ready(ms = 120_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (!this.alive) throw new Error(`daemon exited (${this.proc.exitCode ?? this.proc.signalCode}) before listening:\n${this.log.slice(-4000)}`);
      try {
        const c = await DaemonClient.connect({ socketPath: this.layout.socketPath, connectTimeoutMs: 1000 });
        const hello = c.daemon;
        c.close();
        if (hello.pid === this.pid) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`daemon did not come up within ${ms} ms:\n${this.log.slice(-4000)}`);
      await sleep(25);
    }
  }

  /** Resolves once the daemon's log matches. */
  async waitForLog(pattern: RegExp, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pattern.test(this.log)) {
      if (!this.alive) throw new Error(`daemon exited while waiting for ${pattern}`);
      if (Date.now() > deadline) throw new Error(`daemon never logged ${pattern}`);
      await sleep(5);
    }
  }

  /** SIGKILL: no handler runs, no buffer is flushed, exactly like a power cut for the process. */
  async kill(): Promise<void> {
    if (this.alive) this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the orderly exit status. */
  async stop(): Promise<number | null> {
    if (this.alive) this.proc.kill('SIGTERM');
    return (await this.exited).code;
  }

  /**
   * Every thread's stack (gdb), written to `file`, for a daemon that stopped answering: the
   * difference between a deadlock in JS (one thread idle in epoll) and native threads stuck in a
   * system call. Best effort: without gdb, the threads' kernel wait channels.
   */
  dumpStacks(file: string): void {
    const gdb = spawnSync('gdb', ['-p', String(this.pid), '-batch', '-ex', 'thread apply all bt'], { encoding: 'utf8', timeout: 60_000 });
    let text = gdb.status === 0 ? gdb.stdout : '';
    if (text === '') {
      for (const task of readdirSync(`/proc/${this.pid}/task`)) {
        const read = (f: string): string => { try { return readFileSync(`/proc/${this.pid}/task/${task}/${f}`, 'utf8').trim(); } catch { return '?'; } };
        text += `${task} ${read('comm')} ${read('wchan')}\n`;
      }
    }
    writeFileSync(file, text);
  }

  /** Resident set size in bytes, from /proc. */
  rssBytes(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  }
}

/**
 * The CLI to run: BLOCKSNAP_TEST_BIN names a frozen build (a copy of bin/, dist/ and the addon)
 * so that an hour-long run is not disturbed by rebuilds of the working tree; by default the
 * working tree's, compiled first when stale.
 */
function daemonBin(): string {
  const frozen = process.env.BLOCKSNAP_TEST_BIN;
  if (frozen !== undefined && frozen !== '') return frozen;
  ensureBuilt();
  return BIN;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function connect(layout: Layout): Promise<DaemonClient> {
  return DaemonClient.connect({ socketPath: layout.socketPath, connectTimeoutMs: 5000 });
}

/**
 * Spawns the daemon and SIGKILLs it `delayMs` after it logs "starting" (engine open, crash
 * recovery); resolves whether it had got as far as listening.
 */
export async function killDuringStartup(layout: Layout, delayMs: number, extraArgs: string[] = []): Promise<{ listening: boolean }> {
  const d = DaemonProcess.spawn(layout, extraArgs);
  try {
    await d.waitForLog(/"msg":"starting"/, 15_000);
  } catch {
    // it may already have exited or be slow; the kill below still lands somewhere in start-up
  }
  await sleep(delayMs);
  const listening = /"msg":"listening"/.test(d.stderr());
  await d.kill();
  return { listening };
}

/** A run of crash rounds: set up, every round, an orderly stop; the daemon is killed whatever happens. */
export async function runRounds<S>(t: { stats: S; daemon: DaemonProcess | undefined; setUp(): Promise<void>; round(r: number): Promise<void>; tearDown(): Promise<void> }, rounds: number): Promise<S> {
  try {
    await t.setUp();
    for (let r = 1; r <= rounds; r++) await t.round(r);
    await t.tearDown();
  } finally {
    await t.daemon?.kill();
  }
  return t.stats;
}
