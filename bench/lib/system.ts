/**
 * What the bench asks of the machine: dropping the page cache, disk usage, running a peer under
 * `/usr/bin/time -v` for its peak RSS, installing missing peers from Debian, the SHA-256 ceiling
 * and the floor of hashing cached bytes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

let dropWorks: boolean | undefined;

/** True when this process may drop the page cache (root, and /proc/sys writable). */
export function canDropCaches(): boolean {
  if (dropWorks === undefined) dropWorks = isRoot && tryDrop();
  return dropWorks;
}

function tryDrop(): boolean {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/** Writes back dirty pages and empties the page cache, so the next read comes from the disk. */
export function dropCaches(): void {
  if (!canDropCaches()) throw new Error('cannot drop the page cache (needs root)');
  tryDrop();
}

/**
 * Reads a file once so that its pages are cached: all of it, or only `ranges` (a sparse image,
 * whose holes would otherwise be read as gigabytes of zeros).
 */
export function warm(path: string, ranges?: Array<{ offset: number; length: number }>): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  try {
    if (ranges === undefined) {
      let pos = 0;
      for (let n; (n = readSync(fd, buf, 0, buf.length, pos)) > 0;) pos += n;
      return;
    }
    for (const r of ranges) {
      for (let pos = r.offset, end = r.offset + r.length, n; pos < end && (n = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos)) > 0;) pos += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** The floor's row: reading cached 4 MiB blocks and hashing them with OpenSSL, outside blocksnap. */
export const FLOOR_TOOL = 'pread + SHA-256 of each block (python3 hashlib)';

/**
 * Seconds to read and SHA-256 every 4 MiB block of `path` (already cached) on `threads` threads,
 * outside blocksnap (cached-hash-floor.py): the cheapest way to hash cached bytes here, with the
 * one copy out of the page cache that every read makes. null without python3.
 */
export function cachedHashFloor(path: string, threads: number): number | null {
  if (!has('python3')) return null;
  const r = spawnSync('python3', [join(__dirname, 'cached-hash-floor.py'), path, String(threads)], { encoding: 'utf8' });
  const seconds = Number(r.stdout.trim());
  return r.status === 0 && seconds > 0 ? seconds : null;
}

/** Allocated bytes under `path` (what a user sees grow on their disk). */
export function diskUsage(path: string): number {
  const r = spawnSync('du', ['-s', '-B1', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du ${path} failed: ${r.stderr}`);
  return Number(r.stdout.split('\t')[0]);
}

export function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure each peer command exists, installing its Debian package when root. Returns the
 * commands that are available afterwards.
 */
export function ensurePeers(peers: Record<string, string>, log: (s: string) => void): Set<string> {
  const missing = Object.entries(peers).filter(([cmd]) => !has(cmd));
  if (missing.length > 0 && isRoot) {
    const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
    log(`installing ${pkgs.join(', ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'ignore', env });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
      r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'ignore', env });
    }
  }
  return new Set(Object.keys(peers).filter(has));
}

export interface CommandRun {
  seconds: number;
  /** Peak RSS of the command (from /usr/bin/time -v), when time is installed. */
  peakRssBytes: number | null;
  stdout: string;
}

const TIME = '/usr/bin/time';

/** Runs a command to completion, timing it; throws with its stderr when it fails. */
export function runCommand(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CommandRun> {
  const timed = has(TIME);
  const argv = timed ? ['-v', cmd, ...args] : args;
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const p = spawn(timed ? TIME : cmd, argv, { env: { ...process.env, ...o.env }, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => { if (out.length < 1 << 20) out += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { err += c.toString(); if (err.length > 1 << 20) err = err.slice(-(1 << 19)); });
    p.on('error', reject);
    p.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
        return;
      }
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(err);
      resolve({ seconds, peakRssBytes: m ? Number(m[1]) * 1024 : null, stdout: out });
    });
  });
}

/** SHA-256 bytes per second of OpenSSL on 4 MiB buffers, with `threads` processes. */
export function opensslSha256(threads: number, seconds: number): number | null {
  if (!has('openssl')) return null;
  const args = ['speed', '-evp', 'sha256', '-bytes', String(4 * 1024 * 1024), '-seconds', String(seconds)];
  if (threads > 1) args.push('-multi', String(threads));
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  const m = /^sha256\s+([\d.]+)k\s*$/m.exec(r.stdout);
  return m ? Number(m[1]) * 1000 : null;
}

/**
 * The data extents of `path` as the filesystem holds them now (SEEK_DATA/SEEK_HOLE, through
 * python3, which has both), for a limit that reads what a hole-aware reader must after writes
 * changed the layout. null without python3.
 */
export function allocatedExtents(path: string): Array<{ offset: number; length: number }> | null {
  if (!has('python3')) return null;
  const script = [
    'import os, sys',
    'fd = os.open(sys.argv[1], os.O_RDONLY); end = os.fstat(fd).st_size; off = 0',
    'while off < end:',
    '    try: start = os.lseek(fd, off, os.SEEK_DATA)',
    '    except OSError: break',
    '    stop = os.lseek(fd, start, os.SEEK_HOLE); print(start, stop - start); off = stop',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script, path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`listing the data extents of ${path}: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => {
    const [offset, length] = l.split(' ').map(Number);
    return { offset: offset!, length: length! };
  });
}

/**
 * `extents` (sorted by offset) as at most `max` ranges, joining those across the smallest gaps
 * first: one `dd` per range keeps process start-up out of a limit over thousands of scattered
 * 4 KiB extents (and the shell's 128 KiB argument limit). A joined gap is a hole, read as zeros
 * from no disk, so the ranges cost the reader the same I/O and a little more copying.
 */
export function coalesceExtents(extents: Array<{ offset: number; length: number }>, max: number): Array<{ offset: number; length: number }> {
  if (extents.length <= max) return extents;
  const gaps = extents.slice(1).map((e, i) => e.offset - (extents[i]!.offset + extents[i]!.length)).sort((a, b) => a - b);
  const join = gaps[extents.length - max - 1]!; // joining every gap up to this one leaves ≤ max ranges
  const out = [{ ...extents[0]! }];
  for (const e of extents.slice(1)) {
    const last = out[out.length - 1]!;
    if (e.offset - (last.offset + last.length) <= join) last.length = e.offset + e.length - last.offset;
    else out.push({ ...e });
  }
  return out;
}
