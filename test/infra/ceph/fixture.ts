/**
 * A real single-node Ceph with radosgw for the tests (ceph-local.sh), shared by the test files of
 * one run: tap runs files in parallel and Ceph's ports are fixed, so the first user brings the
 * cluster up under a lock and later users reuse it. Users are pid markers; a marker of a dead
 * process does not count. Outside tap the last user to leave tears the cluster down. Under tap
 * (TAP=1 in test processes and their children) it stays up for the run's later files, since
 * bringing it up is ~30 s of waiting and six files use it; the run's `after` program
 * (stop-unused.ts) stops it once no process uses it, and a killed run's cluster is reused or
 * stopped by the next.
 *
 * When the Ceph packages are missing and cannot be installed (not root), tests skip with that
 * reason; any other failure to come up fails the test with the script's output.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

const SCRIPT = join(__dirname, 'ceph-local.sh');
const BASE = join(tmpdir(), 'blocksnap-ceph');
const CLUSTER = join(BASE, 'cluster');
const USERS = join(BASE, 'users');
const LOCK = join(BASE, 'lock');
const ENV_FILE = join(BASE, 'env');

export interface Ceph {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  cephConf: string;
}

function withLock<T>(fn: () => T): T {
  mkdirSync(BASE, { recursive: true });
  const until = Date.now() + 300_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch {
      if (Date.now() > until) throw new Error(`${LOCK} held for 5 minutes; remove it if no test is running`);
      spawnSync('sleep', ['0.2']);
    }
  }
  try {
    return fn();
  } finally {
    rmdirSync(LOCK);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function liveUsers(): string[] {
  if (!existsSync(USERS)) return [];
  return readdirSync(USERS).filter((u) => {
    if (alive(Number(u))) return true;
    rmSync(join(USERS, u), { force: true });
    return false;
  });
}

function parseEnv(text: string): Ceph {
  const v = new Map(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
  return { endpoint: v.get('S3_ENDPOINT')!, accessKey: v.get('S3_ACCESS_KEY')!, secretKey: v.get('S3_SECRET_KEY')!, cephConf: v.get('CEPH_CONF')! };
}

function rgwAnswers(endpoint: string): boolean {
  return spawnSync('curl', ['-s', '-o', '/dev/null', '-m', '3', endpoint]).status === 0;
}

/** Whether Ceph can run here: the packages are present or were just installed. */
export function cephInstallable(): { ok: true } | { ok: false; why: string } {
  const install = spawnSync(SCRIPT, ['install'], { encoding: 'utf8' });
  return install.status === 0 ? { ok: true } : { ok: false, why: install.stderr.trim() };
}

/**
 * Brings Ceph up, or joins the cluster another process of this run brought up. `release` leaves it;
 * the last user to leave stops it, unless under tap. Throws with the script's output when Ceph
 * does not come up.
 */
export function acquireCeph(): { ceph: Ceph; release: () => void } {
  const ceph = withLock((): Ceph => {
    if (existsSync(ENV_FILE) && existsSync(CLUSTER)) {
      const env = parseEnv(readFileSync(ENV_FILE, 'utf8'));
      if (rgwAnswers(env.endpoint)) {
        mkdirSync(USERS, { recursive: true });
        writeFileSync(join(USERS, String(process.pid)), '');
        return env;
      }
    }
    spawnSync(SCRIPT, ['down', CLUSTER]);
    const up = spawnSync(SCRIPT, ['up', CLUSTER], { encoding: 'utf8', timeout: 240_000 });
    if (up.status !== 0) throw new Error(`Ceph did not come up (exit ${up.status}):\n${up.stdout}\n${up.stderr}`);
    writeFileSync(ENV_FILE, up.stdout);
    mkdirSync(USERS, { recursive: true });
    writeFileSync(join(USERS, String(process.pid)), '');
    return parseEnv(up.stdout);
  });
  let released = false;
  return {
    ceph,
    release: () => {
      if (released) return;
      released = true;
      withLock(() => {
        rmSync(join(USERS, String(process.pid)), { force: true });
        if (process.env.TAP !== '1') stopWhenUnused();
      });
    },
  };
}

function stopWhenUnused(): void {
  if (liveUsers().length > 0) return;
  spawnSync(SCRIPT, ['down', CLUSTER]);
  rmSync(ENV_FILE, { force: true });
}

/** Stops the cluster when no live process uses it (the tap run's `after` program). */
export function stopUnusedCeph(): void {
  if (!existsSync(CLUSTER)) return;
  withLock(stopWhenUnused);
}

/** Ceph for this test file, released at its end; null (and a skip) when it cannot run here. */
export function useCeph(t: Test): Ceph | null {
  const can = cephInstallable();
  if (!can.ok) {
    t.pass('nothing to check without Ceph', { skip: `no Ceph on this machine: ${can.why}` });
    return null;
  }
  const { ceph, release } = acquireCeph();
  t.teardown(release);
  return ceph;
}
