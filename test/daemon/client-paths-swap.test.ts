/**
 * A client that is neither root nor the daemon's user may rename files in a directory it may
 * write, and so swap a root-only file with the image of a disk it registered while the daemon
 * works on that disk: between the check of its rights and the job's open, the daemon would read or
 * write the root file with its own rights. Here a process of that user swaps the two names
 * atomically (renameat2 RENAME_EXCHANGE) in a tight loop while the user snapshots and rolls back;
 * whatever each job ends with, no snapshot may hold the root file's content and no rollback may
 * change it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Disk, Job } from '../../src/engine/types';
import { clientFixture as fixture, KiB64, notRoot, ROOT, USER, type ClientFixture } from './fixtures/client-context';
import { makeImage } from '../helpers/images';

const PYTHON = '/usr/bin/python3';
const noRacer = notRoot || spawnSync(PYTHON, ['-c', 'import ctypes; ctypes.CDLL(None).renameat2'], { uid: USER.uid, gid: USER.gid }).status !== 0
  ? 'needs root, and python3 with renameat2 runnable as another user' : false;

/** Exchanges the names `a` and `b` (renameat2 RENAME_EXCHANGE) as USER until killed; prints "racing" once it swapped once. */
function racer(t: Test, a: string, b: string): Promise<ChildProcess> {
  const script = [
    'import ctypes, sys',
    'libc = ctypes.CDLL(None, use_errno=True)',
    'a, b = sys.argv[1].encode(), sys.argv[2].encode()',
    'first = True',
    'while True:',
    '    if libc.renameat2(-100, a, -100, b, 2) != 0: sys.exit("renameat2: errno %d" % ctypes.get_errno())',
    '    if first: print("racing", flush=True); first = False',
  ].join('\n');
  const child = spawn(PYTHON, ['-c', script, a, b], { uid: USER.uid, gid: USER.gid, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => stop(child));
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`the racer exited (${code}) before it swapped the files`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await gone;
}

/**
 * USER's disk `mine` on `u/mine.raw` (2 blocks) in a directory of USER's, and beside it a root-only
 * file of the same size and another content: a snapshot that read it would succeed and hold it.
 */
async function diskBesideRootFile(f: ClientFixture): Promise<{ mine: string; rootFile: string; userBytes: Buffer; rootBytes: Buffer }> {
  f.dir('u', USER, 0o755);
  const mine = f.image('u/mine.raw', USER, 0o600);
  writeFileSync(mine, Buffer.alloc(2 * KiB64, 0x55));
  await f.call<Disk>('disk.add', { path: mine, name: 'mine' });
  const rootFile = makeImage(join(f.images, 'u/root.raw'), 2 * KiB64);
  writeFileSync(rootFile, Buffer.alloc(2 * KiB64, 0xaa), { mode: 0o600 });
  return { mine, rootFile, userBytes: readFileSync(mine), rootBytes: readFileSync(rootFile) };
}

/** The file in `dir` that is `ino` now, whichever name the racer left it under. */
function byInode(dir: string, ino: number): string {
  const name = readdirSync(dir).find((n) => statSync(join(dir, n)).ino === ino);
  if (name === undefined) throw new Error(`no file in ${dir} is inode ${ino}`);
  return join(dir, name);
}

const ROUNDS = 40;

t.test('a root-only file swapped with a user\'s image while it snapshots never ends up in a snapshot', { skip: noRacer }, async (t) => {
  const f = await fixture(t);
  const { mine, rootFile, userBytes } = await diskBesideRootFile(f);
  const child = await racer(t, mine, rootFile);
  const ended: Record<string, number> = {};
  const taken: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const job = await f.call<Job>('snapshot.create', { disk: 'mine', name: `s${i}`, wait: true });
    const how = job.state === 'succeeded' ? 'succeeded' : job.error!.code;
    ended[how] = (ended[how] ?? 0) + 1;
    if (job.state === 'succeeded') taken.push(`s${i}`);
  }
  await stop(child);
  t.comment(`snapshots while the files were swapped: ${JSON.stringify(ended)}`);
  t.ok(Object.keys(ended).every((k) => ['succeeded', 'NotAuthorized', 'ImageReplaced', 'ImageNotFound'].includes(k)), 'each ended taken or refused');
  for (const name of taken) {
    const snap = f.engine.listSnapshots('mine').find((s) => s.name === name)!;
    const copy = join(f.images, `${name}.copy.raw`);
    t.equal((await f.call<Job>('clone', { snapshot: snap.id, path: copy, wait: true }, { uid: 0 })).state, 'succeeded');
    t.ok(readFileSync(copy).equals(userBytes), `${name} holds the user's image`);
  }
});

t.test('a root-only file swapped with a user\'s image while it rolls back is never written', { skip: noRacer }, async (t) => {
  const f = await fixture(t);
  const { mine, rootFile, rootBytes } = await diskBesideRootFile(f);
  t.equal((await f.call<Job>('snapshot.create', { disk: 'mine', name: 'good', wait: true })).state, 'succeeded');
  const rootIno = statSync(rootFile).ino;
  const child = await racer(t, mine, rootFile);
  const ended: Record<string, number> = {};
  for (let i = 0; i < ROUNDS; i++) {
    let how = 'succeeded';
    try {
      await f.call<Job>('rollback', { disk: 'mine', snapshot: 'good', wait: true });
    } catch (err) {
      how = (err as { code: string }).code;
      // A rollback stopped partway leaves its journal: abandoning it lets the next one start afresh.
      if (f.engine.getDisk('mine').pendingRollback !== null) await f.call('rollback', { disk: 'mine', abandon: true }, { uid: 0 });
    }
    ended[how] = (ended[how] ?? 0) + 1;
  }
  await stop(child);
  t.comment(`rollbacks while the files were swapped: ${JSON.stringify(ended)}`);
  const root = byInode(join(f.images, 'u'), rootIno);
  const st = statSync(root);
  t.ok(readFileSync(root).equals(rootBytes), 'root\'s file holds what it held');
  t.same({ uid: st.uid, mode: st.mode & 0o7777, size: st.size }, { uid: ROOT.uid, mode: 0o600, size: rootBytes.length }, 'and keeps its owner, mode and size');
});
