/**
 * QEMU's own tools as the judge of qcow2 work: qemu-img (create, convert, check, compare, info),
 * qemu-io (guest writes through the format driver) and qemu-nbd (a process holding an image the
 * way a running VM does, with the same OFD locks).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { probeImageLocks } from '../../src/native';

export function haveQemu(): string | false {
  for (const tool of ['qemu-img', 'qemu-io', 'qemu-nbd']) {
    if (spawnSync(tool, ['--version']).status !== 0) return `${tool} is not installed (apt-get install qemu-utils)`;
  }
  return false;
}

export interface Run { status: number | null; stdout: string; stderr: string }

export function run(cmd: string, args: string[]): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a command and throws with its output when it fails. */
export function must(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
  return r.stdout;
}

export function qemuImg(...args: string[]): string {
  return must('qemu-img', args);
}

/** Guest writes through QEMU's format driver: each command one -c (e.g. 'write -P 0xab 0 1M'). */
export function qemuIo(image: string, format: 'raw' | 'qcow2', ...commands: string[]): void {
  must('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), image]);
}

/** `qemu-img check`: exit 0 means no errors, no leaks. */
export function check(image: string): Run {
  return run('qemu-img', ['check', '-f', 'qcow2', image]);
}

/**
 * `qemu-img compare`; exit 0 means identical content. Not strict mode (-s): that also fails on
 * allocation differences (a zero cluster against a hole), which are not content. Different
 * virtual sizes fail here too: compare reports them unless the extra part is zero, so sizes are
 * checked separately.
 */
export function compare(a: string, fa: 'raw' | 'qcow2', b: string, fb: 'raw' | 'qcow2'): Run {
  const r = run('qemu-img', ['compare', '-f', fa, '-F', fb, a, b]);
  const sa = virtualSize(a, fa), sb = virtualSize(b, fb);
  if (r.status === 0 && sa !== sb) return { ...r, status: 1, stdout: `${r.stdout}virtual sizes differ: ${sa} vs ${sb}\n` };
  return r;
}

export function virtualSize(image: string, format: 'raw' | 'qcow2'): number {
  return (JSON.parse(must('qemu-img', ['info', '-U', '-f', format, '--output=json', image])) as { 'virtual-size': number })['virtual-size'];
}

export function info(image: string): Record<string, unknown> {
  return JSON.parse(must('qemu-img', ['info', '-U', '--output=json', image])) as Record<string, unknown>;
}

export interface MapExtent { start: number; length: number; depth: number; present?: boolean; zero: boolean; data: boolean }

/** `qemu-img map`: where each range of `image` is read from (depth 0: the image itself, 1: its backing file, ...). */
export function map(image: string): MapExtent[] {
  return JSON.parse(must('qemu-img', ['map', '-U', '--output=json', image])) as MapExtent[];
}

/** The ranges the image itself holds (data, zero clusters, allocated clusters), neighbours merged: [start, end) pairs. */
export function ownRanges(image: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const e of map(image)) {
    if (e.depth !== 0 || e.present === false) continue;
    const last = out[out.length - 1];
    if (last && last[1] === e.start) last[1] += e.length;
    else out.push([e.start, e.start + e.length]);
  }
  return out;
}

/**
 * qemu-nbd serving `image` read-write on a Unix socket, holding it like a running VM. It dies with
 * the test process (setpriv --pdeathsig), so a test file the runner kills on its timeout leaves no
 * qemu-nbd behind holding its image.
 */
export async function holdWithNbd(image: string, format: 'raw' | 'qcow2', socket: string): Promise<{ stop(): Promise<void> }> {
  const child: ChildProcess = spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'qemu-nbd', '-f', format, '-k', socket, '--persistent', image],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  // Generous: on a loaded machine starting qemu-nbd and opening the image can take seconds.
  const deadline = Date.now() + 60_000;
  // The socket can appear before qemu-nbd has taken its image locks: wait for the write lock too.
  while (!existsSync(socket) || !probeImageLocks(image).held.includes('write')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`qemu-nbd did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
