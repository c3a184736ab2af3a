import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Test } from 'tap';

export interface OpenGate {
  /** Resolves with the opener's pid once the first open of the file waits at the gate. */
  held: Promise<number>;
  /** Lets the held open, and every later one, go on. */
  release(): void;
}

/**
 * Holds the first open(2) of `file` by any process until `release()` (open-gate.py, fanotify):
 * a point inside a native job that reads the file, where the test acts while the job waits
 * there. Resolves once the file is watched, or to `{ skip }` where fanotify is not allowed (it
 * needs root).
 */
export async function gateFirstOpen(t: Test, file: string): Promise<OpenGate | { skip: string }> {
  if (process.getuid?.() !== 0) return { skip: 'holding an open with fanotify needs root' };
  const proc = spawn('python3', [join(__dirname, 'open-gate.py'), file], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const release = (): void => { if (proc.stdin.writable) proc.stdin.write('go\n'); };
  t.teardown(async () => {
    proc.stdin.end();
    await exited;
  });
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done || first.value !== 'ready') return { skip: `fanotify: ${first.done ? 'the gate exited' : first.value}` };
  const held = lines.next().then((l) => {
    const m = l.done ? null : /^held (\d+)$/.exec(l.value);
    if (m === null) throw new Error(`the open gate ended without holding an open of ${file}`);
    return Number(m[1]);
  });
  return { held, release };
}
