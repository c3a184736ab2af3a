/**
 * Every directory the daemon creates, and the catalog's file, is durable in its parent before the
 * catalog commit that may depend on it, and so is every block file, its content before its rename
 * into place and its name after: observed for real, by running engines under strace and reading
 * the order of mkdir, rename, fsync and the catalog's fdatasync (LMDB's commit) in the trace.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');
const missing = spawnSync('strace', ['-V']).error ? 'strace is not installed (apt-get install strace)' : false;

/** One system call of the trace: `start` and `end` are the indexes of its first and last line. */
interface Call { name: string; args: string; ret: string; start: number; end: number }

/** Calls of `strace -f -y -o` output, "unfinished" calls joined with their "resumed" ends. */
function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<string, { name: string; args: string; start: number }>();
  text.split('\n').forEach((line, i) => {
    let m = /^(\d+)\s+<\.\.\. (\w+) resumed>(.*)\)\s+= (.*)$/.exec(line);
    if (m) {
      const p = pending.get(m[1]!);
      pending.delete(m[1]!);
      if (p) calls.push({ name: p.name, args: p.args + m[3]!, ret: m[4]!, start: p.start, end: i });
      return;
    }
    m = /^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$/.exec(line);
    if (m) {
      pending.set(m[1]!, { name: m[2]!, args: m[3]!, start: i });
      return;
    }
    m = /^(\d+)\s+(\w+)\((.*)\)\s+= (.*)$/.exec(line);
    if (m) calls.push({ name: m[2]!, args: m[3]!, ret: m[4]!, start: i, end: i });
  });
  return calls;
}

/** The path a mkdir, mkdirat or openat names (its first quoted argument). */
const pathArg = (c: Call): string => /"((?:[^"\\]|\\.)*)"/.exec(c.args)![1]!;
/** The old and new paths of a rename, renameat or renameat2. */
const renamed = (c: Call): { from: string; to: string } => {
  const [from, to] = [...c.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
  return { from: from!, to: to! };
};
/** The path of a descriptor argument as `-y` prints it: `20</tmp/x>`, `24</tmp/#1234>(deleted)`. */
const fdPath = (c: Call): string => /^\d+<(.*)>/.exec(c.args)![1]!;

interface Traced { root: string; created: Call[]; renames: Call[]; fsyncs: Call[]; commits: Call[]; marks: Call[] }

/** The child's steps under strace, once for all tests of this file. */
let traced: Traced | undefined;
function runTraced(t: Test): Traced {
  if (traced) return traced;
  const root = t.testdir();
  mkdirSync(join(root, 'images'));
  mkdirSync(join(root, 'marks'));
  const trace = join(root, 'trace');
  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'directory-durability-child.ts'))})`;
  const child = spawnSync('strace', ['-f', '-y', '-o', trace, '-e', 'trace=mkdir,mkdirat,openat,rename,renameat,renameat2,fsync,fdatasync', process.execPath, '-e', main, root], {
    cwd: join(__dirname, '..', '..'), encoding: 'utf8', timeout: 300_000,
  });
  if (child.status !== 0) throw new Error(`the traced engines failed: ${child.stderr.slice(-2000)}`);
  const calls = parseTrace(readFileSync(trace, 'utf8')).filter((c) => !c.ret.startsWith('-1'));
  const inDataDirs = (c: Call): boolean => /^\/[xyz](\/|$)/.test(pathArg(c).slice(root.length)) && pathArg(c).startsWith(root);
  traced = {
    root,
    created: calls.filter((c) => (c.name.startsWith('mkdir') && inDataDirs(c)) ||
      (c.name === 'openat' && c.args.includes('O_EXCL') && pathArg(c).endsWith('/catalog.mdb'))),
    renames: calls.filter((c) => c.name.startsWith('rename') && renamed(c).to.startsWith(root)),
    fsyncs: calls.filter((c) => c.name === 'fsync'),
    commits: calls.filter((c) => c.name === 'fdatasync' && fdPath(c).endsWith('/catalog.mdb')),
    marks: calls.filter((c) => c.name.startsWith('mkdir') && dirname(pathArg(c)) === join(root, 'marks')),
  };
  return traced;
}

/** The line by which what a step made must be durable: its last commit in `dataDir` after `after`, or its end. */
function deadline(r: Traced, after: number, step: string, dataDir: string): number {
  const mark = r.marks.find((m) => pathArg(m) === join(r.root, 'marks', step))!;
  const inStep = r.commits.filter((c) => c.start > after && c.start < mark.start && fdPath(c) === join(r.root, dataDir, 'catalog.mdb'));
  return inStep.length > 0 ? inStep[inStep.length - 1]!.start : mark.start;
}

/** The step in which line `line` ran: the first whose marker comes after it. */
function stepOf(r: Traced, line: number): string | undefined {
  const mark = r.marks.find((m) => m.start > line);
  return mark && pathArg(mark).slice(join(r.root, 'marks').length + 1);
}

t.test('the steps create the data dirs, their parents, the catalog file, the store, fan-out and COW directories', { skip: missing }, async (t) => {
  const r = runTraced(t);
  const names = r.created.map((c) => pathArg(c).slice(r.root.length));
  for (const expected of ['/x', '/x/data', '/x/data/catalog.mdb', '/x/data/blocks', '/x/data/blocks/tmp', '/x/data/cow', '/y', '/y/data', '/y/data/blocks', '/z', '/z/data', '/z/data/blocks']) {
    t.ok(names.includes(expected), `${expected} was created`);
  }
  t.ok(names.some((n) => /^\/x\/data\/cow\/[^/]+$/.test(n)), 'a COW disk directory was created');
  t.ok(names.some((n) => /^\/x\/data\/blocks\/[0-9a-f]{3}$/.test(n)), 'a snapshot created a fan-out directory');
  t.ok(names.some((n) => /^\/y\/data\/blocks\/[0-9a-f]{3}$/.test(n)), 'an import created a fan-out directory');
});

t.test('each new entry is fsynced in its parent after its creation and before the last commit of its step', { skip: missing }, async (t) => {
  const r = runTraced(t);
  for (const c of r.created) {
    const path = pathArg(c);
    const rel = path.slice(r.root.length);
    // Granule files are a cache written without fsync (docs/design.md): their directories need none.
    if (rel.includes('/granules')) continue;
    const step = stepOf(r, c.end);
    if (step === undefined) {
      t.fail(`${rel} was created after the last step`);
      continue;
    }
    const by = deadline(r, c.end, step, rel.slice(0, 2) + '/data');
    t.ok(r.fsyncs.some((f) => fdPath(f) === dirname(path) && f.start > c.end && f.end < by), `${rel}: parent fsynced in step ${step}`);
  }
});

t.test('a snapshot that finds every block present, in fan-out directories another job made, fsyncs the store directory before its commit', { skip: missing }, async (t) => {
  const r = runTraced(t);
  const after = r.marks.find((m) => pathArg(m) === join(r.root, 'marks', 'snapshot-a'))!.end;
  const by = deadline(r, after, 'snapshot-b', '/x/data');
  t.ok(r.fsyncs.some((f) => fdPath(f) === join(r.root, 'x', 'data', 'blocks') && f.start > after && f.end < by), 'blocks/ fsynced in step snapshot-b');
});

t.test('a COW clone made after cow/ exists fsyncs the data dir, whose entry cow/ another job made, before its commit', { skip: missing }, async (t) => {
  const r = runTraced(t);
  const after = r.marks.find((m) => pathArg(m) === join(r.root, 'marks', 'clone-cow'))!.end;
  const by = deadline(r, after, 'clone-cow-2', '/x/data');
  t.ok(r.fsyncs.some((f) => fdPath(f) === join(r.root, 'x', 'data') && f.start > after && f.end < by), 'the data dir fsynced in step clone-cow-2');
});

/** The block files renamed into the store of `dataDir` during `step`. */
function blocksStored(r: Traced, step: string, dataDir: string): Call[] {
  const store = join(r.root, dataDir, 'blocks');
  return r.renames.filter((c) => stepOf(r, c.end) === step && dirname(dirname(renamed(c).to)) === store);
}

/** Each block file of the step: its temp file fsynced before its rename, its fan-out directory after it, before the step's commit. */
function checkBlockFiles(t: Test, r: Traced, step: string, dataDir: string): void {
  const stored = blocksStored(r, step, dataDir);
  t.ok(stored.length > 0, `step ${step} stored block files`);
  for (const c of stored) {
    const { from, to } = renamed(c);
    const by = deadline(r, c.end, step, dataDir);
    t.ok(r.fsyncs.some((f) => fdPath(f) === from && f.end < c.start), `${from.slice(r.root.length)} fsynced before its rename`);
    t.ok(r.fsyncs.some((f) => fdPath(f) === dirname(to) && f.start > c.end && f.end < by), `${to.slice(r.root.length)}: fan-out directory fsynced after the rename, before the commit`);
  }
}

t.test('a snapshot\'s block files (the native writer) are durable, content and name, before its commit', { skip: missing }, async (t) => {
  checkBlockFiles(t, runTraced(t), 'snapshot-a', '/x/data');
});

t.test('an import\'s block files (the stream writer) are durable, content and name, before its commit', { skip: missing }, async (t) => {
  checkBlockFiles(t, runTraced(t), 'import', '/y/data');
});

t.test('an import that finds its blocks stored by another import not yet committed fsyncs their fan-out directories before its commit', { skip: missing }, async (t) => {
  const r = runTraced(t);
  const fanouts = [...new Set(blocksStored(r, 'import-held', '/z/data').map((c) => dirname(renamed(c).to)))];
  t.ok(fanouts.length > 0, 'the held import stored the blocks');
  t.equal(blocksStored(r, 'import-found', '/z/data').length, 0, 'the second import stored none');
  const after = r.marks.find((m) => pathArg(m) === join(r.root, 'marks', 'import-held'))!.end;
  const by = deadline(r, after, 'import-found', '/z/data');
  for (const dir of [...fanouts, join(r.root, 'z', 'data', 'blocks')]) {
    t.ok(r.fsyncs.some((f) => fdPath(f) === dir && f.start > after && f.end < by), `${dir.slice(r.root.length)} fsynced in step import-found`);
  }
});
