/**
 * The CLI on a terminal: a pseudo-terminal from python3's pty module (pty-relay.py), since Node
 * has none. Keys are written as bytes ('\x03' is Ctrl-C, '\x04' Ctrl-D); what the CLI shows on the
 * terminal (stdout and stderr together) is collected as it comes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export class PtyRun {
  output = '';
  readonly exited: Promise<number | null>;
  private readonly proc: ChildProcess;
  private waiters: Array<() => void> = [];

  constructor(argv: string[], env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn('python3', [join(__dirname, 'pty-relay.py'), ...argv], { env: { ...process.env, TERM: 'xterm', ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.stdout!.on('data', (c: Buffer) => {
      this.output += c.toString();
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve, reject) => {
      this.proc.on('error', reject);
      this.proc.on('close', (code) => {
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      });
    });
  }

  type(keys: string): void {
    this.proc.stdin!.write(keys);
  }

  /** Sends `signal` to the command (through the relay). */
  signal(signal: 'SIGTERM' | 'SIGHUP'): void {
    this.proc.kill(signal);
  }

  /**
   * Resolves once the output satisfies `done`; fails after `ms` or when the command ended first.
   * Long by default: a CLI's start on a loaded machine alone can take seconds.
   */
  async until(what: string, done: (output: string) => boolean, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!done(this.output)) {
      if (this.proc.exitCode !== null) throw new Error(`the command ended before ${what}; its output:\n${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; the output so far:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  kill(): void {
    this.proc.kill('SIGKILL');
  }
}
