/**
 * The real daemon as a user runs it (the compiled CLI, `blocksnap daemon`), driven over its
 * socket with the project's own client. Peak RSS is the kernel's high-water mark (VmHWM) of the
 * daemon process, reset before each timed operation through /proc/PID/clear_refs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DaemonClient } from '../../src/daemon/client';
import type { Job, Snapshot } from '../../src/engine/types';
import { BIN, ensureBuilt } from '../../test/integration/fixtures/harness';

export interface DaemonOptions {
  /** Holds data/, the socket and the config file. */
  dir: string;
  imageRoot: string;
  blockSize?: number;
  /** Manual snapshots allowed per disk (the daemon's default is 256). */
  manualSnapshotQuota?: number;
  /** Serve NBD on `<dir>/n.sock` (exports, copy-on-write disks). */
  nbd?: boolean;
  /** Log at level info (phase timings of each job, read back with `lastLog`); otherwise warn. */
  infoLog?: boolean;
}

export class BenchDaemon {
  private constructor(
    readonly proc: ChildProcess,
    readonly client: DaemonClient,
    readonly dataDir: string,
    private readonly stderr: () => string,
  ) {}

  static async start(o: DaemonOptions): Promise<BenchDaemon> {
    ensureBuilt();
    mkdirSync(o.dir, { recursive: true });
    const dataDir = join(o.dir, 'data');
    const socketPath = join(o.dir, 'd.sock');
    const config = join(o.dir, 'config.json');
    writeFileSync(config, JSON.stringify({
      ...(o.blockSize ? { blockSize: o.blockSize } : {}),
      ...(o.manualSnapshotQuota ? { manualSnapshotQuota: o.manualSnapshotQuota } : {}),
    }));
    const proc = spawn(process.execPath, [BIN, 'daemon', '--config', config, '--data-dir', dataDir, '--socket', socketPath,
      '--image-root', o.imageRoot, '--log-level', o.infoLog || process.env.BLOCKSNAP_BENCH_DAEMON_LOG ? 'info' : 'warn', ...(o.nbd ? ['--nbd-socket', join(o.dir, 'n.sock')] : [])],
    { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    // BLOCKSNAP_BENCH_DAEMON_LOG=FILE: the daemon's log at level info, appended to FILE (phase timings of each job).
    const logFile = process.env.BLOCKSNAP_BENCH_DAEMON_LOG;
    proc.stderr!.on('data', (c: Buffer) => {
      err = (err + c.toString()).slice(-20000);
      if (logFile) appendFileSync(logFile, c);
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`the daemon exited ${proc.exitCode} at start: ${err.split('\n').find((l) => l.startsWith('blocksnap daemon:')) ?? err.slice(-600)}`);
      try {
        const client = await DaemonClient.connect({ socketPath, connectTimeoutMs: 1000, clientName: 'bench' });
        return new BenchDaemon(proc, client, dataDir, () => err);
      } catch {
        if (Date.now() > deadline) {
          proc.kill('SIGKILL');
          throw new Error(`the daemon did not come up:\n${err}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** The last log record (the daemon logs one JSON object per line) whose msg is `msg`, if any. */
  lastLog(msg: string): Record<string, unknown> | undefined {
    const lines = this.stderr().split('\n').reverse();
    for (const line of lines) {
      if (!line.includes(msg)) continue;
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        if (rec.msg === msg) return rec;
      } catch {
        // the first line of the kept tail may be cut
      }
    }
    return undefined;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Starts a new peak-RSS window (Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM). */
  resetPeak(): void {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
    } catch {
      // Not permitted: the peak then covers the daemon's whole life, which is still an upper bound.
    }
  }

  peakRss(): number | null {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  }

  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    return this.client.call<T>(method, params as never);
  }

  async addDisk(path: string, name?: string): Promise<string> {
    const d = await this.call<{ id: string }>('disk.add', name ? { path, name } : { path });
    return d.id;
  }

  /** Runs a job method with wait and returns the finished job, failing unless it succeeded. */
  async job(method: string, params: Record<string, unknown>): Promise<Job> {
    const job = await this.call<Job>(method, { ...params, wait: true });
    if (job.state !== 'succeeded') throw new Error(`${method} ended ${job.state}: ${job.error?.code} ${job.error?.message}\n${this.stderr().slice(-2000)}`);
    return job;
  }

  async snapshot(disk: string, name?: string): Promise<Snapshot> {
    const job = await this.job('snapshot.create', name ? { disk, name } : { disk });
    return job.result as Snapshot;
  }

  async stop(): Promise<void> {
    this.client.close();
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }
}
