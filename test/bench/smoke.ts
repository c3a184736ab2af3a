/**
 * The bench at scale 0.01, so its scripts cannot rot: every question runs against the real
 * daemon and the peers, and its JSON holds every row the full run reports. Times are never
 * asserted here; they are the bench's business. The questions are split over a few test files
 * (smoke-*.test.ts): on a loaded machine the whole bench at this scale took over 9 minutes, past
 * the runner's limit for one file.
 */
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Row, Section } from '../../bench/lib/report';

const ROOT = join(__dirname, '..', '..');

// The rows' tool names as the bench prints them (bench/lib/system.ts FLOOR_TOOL, bench/incremental.ts
// FULL_OF_CHANGED), spelled out: importing the bench's modules here would count them in this
// suite's coverage, though the bench runs in a process of its own.
const FLOOR_TOOL = 'pread + SHA-256 of each block (python3 hashlib)';
const FULL_OF_CHANGED = 'blocksnap full snapshot of the changed image, empty store (daemon)';

/** Per question: the rows (case prefix → tools) a run must report, whatever the machine has. */
export const EXPECTED: Record<string, Array<[string, string[]]>> = {
  full: [
    ['full snapshot, warm', ['dd bs=4M (read)', 'cp --sparse=always + sync', 'blocksnap snapshot (daemon)']],
    ['unchanged re-snapshot, warm', ['blocksnap snapshot (daemon)']],
  ],
  incremental: [
    ['clustered, warm', ['dd bs=4M (allocated data)', 'blocksnap full snapshot (daemon), 1 run', 'blocksnap incremental (daemon)']],
    ['scattered, warm', ['dd bs=4M (allocated data)', 'blocksnap incremental (daemon)', FULL_OF_CHANGED]],
  ],
  sparse: [
    ['sparse snapshot, warm', ['dd bs=4M (the data extents)', 'cp --sparse=always + sync', 'blocksnap snapshot (daemon)']],
    // Measured in the first cache state only (cold where the page cache can be dropped).
    ['sparse snapshot', ['reference workload: dd of the extents + dd oflag=direct of as many bytes, at once']],
  ],
  'rollback-clone': [
    ['rollback, warm', ['blocksnap incremental of the same change (daemon)', 'dd bs=4M write of the blocks the rollback writes + fsync', 'blocksnap rollback (daemon)']],
    ['clone, warm', ['cp --sparse=always + sync', 'blocksnap clone (daemon)']],
  ],
  'delete-list': [
    ['delete a middle snapshot that changed', ['blocksnap snapshot delete (socket)']],
    ['snapshot list of the disk', ['blocksnap snapshot.list (socket), p50']],
    ['snapshot list all disks', ['blocksnap snapshot.list (socket), p50']],
  ],
  hash: [
    // The floor's row, python3 with OpenSSL's hashlib: python3 is on every machine that builds the addon (node-gyp).
    ['1 thread', ['blocksnap native scan, hash only (engine API)', FLOOR_TOOL]],
    ['2 threads', ['blocksnap native scan, hash only (engine API)', FLOOR_TOOL]],
  ],
};

/** Peer rows appear either measured or as "not installed", never silently absent. */
export const PEERS: Record<string, string[]> = {
  full: ['qemu-img convert', 'restic backup (compression off)', 'restic backup (compression default auto, zstd)', 'borg create (compression none)', 'borg create (compression default lz4)'],
  incremental: ['restic backup (compression off)', 'restic backup (compression default auto, zstd)', 'borg create (default lz4)'],
  'rollback-clone': ['restic restore (compression off)', 'restic restore (compression default auto, zstd)', 'borg extract --sparse (compression none)', 'borg extract --sparse (compression default lz4)'],
};

/** Runs the bench on `questions` and checks its output and the JSON of each. */
export function smoke(t: Test, questions: string[]): void {
  // The bench is a program of its own: started through env(1) without NODE_OPTIONS, it does not
  // inherit the test runner's module hooks (which would load bench/run.ts as an ES module); the
  // suite's cached transpiler loads its TypeScript.
  const out = t.testdir();
  // Under the system temp dir: the daemons' socket paths must stay under 108 bytes.
  const work = mkdtempSync(join(tmpdir(), 'bs-smoke-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  // --cache both: the default run measures only the cache states targets read; this run covers both code paths.
  const run = spawnSync('env', ['-u', 'NODE_OPTIONS', process.execPath, '-r', join(ROOT, 'test', 'helpers', 'ts-require.js'), join(ROOT, 'bench', 'run.ts'),
    ...questions, '--scale', '0.01', '--runs', '1', '--cache', 'both', '--out', out, '--work', work], { cwd: ROOT, encoding: 'utf8', timeout: 540_000 });

  t.equal(run.status, 0, `the bench exits 0\n${run.stderr.slice(-4000)}`);
  t.match(run.stdout, /\| case \| tool \| runs \| wall s /, 'it prints markdown tables');
  t.ok(existsSync(join(out, 'report.md')), 'it writes report.md');

  for (const [name, cases] of Object.entries(EXPECTED).filter(([name]) => questions.includes(name))) {
    t.test(`${name}: the JSON has every row`, async (t) => {
      const file = join(out, `${name}.json`);
      t.ok(existsSync(file), `${name}.json written`);
      if (!existsSync(file)) return;
      const json = JSON.parse(readFileSync(file, 'utf8')) as { error?: string; scale: number; section: Section };
      t.equal(json.error, undefined, 'the question did not fail');
      t.equal(json.scale, 0.01);
      const rows = json.section.rows;
      const find = (c: string, tool: string): Row | undefined => rows.find((r) => r.case.startsWith(c) && r.tool === tool);
      for (const [c, tools] of cases) {
        for (const tool of tools) {
          const row = find(c, tool);
          t.ok(row, `row "${c}" / "${tool}"`);
          if (!row) continue;
          t.equal(row.status, 'ok', `${tool} ran`);
          t.ok(typeof row.seconds === 'number' && row.seconds > 0, `${tool} has a time`);
          t.ok(row.samples.length >= 1, 'its samples are kept');
        }
      }
      for (const r of rows.filter((r) => r.kind === 'ours' && r.limit !== null)) {
        t.ok(typeof r.ratio === 'number' && r.ratio > 0, `"${r.case}" / "${r.tool}" has a ratio to ${r.limit}`);
      }
      for (const peer of PEERS[name] ?? []) {
        const row = rows.find((r) => r.tool.startsWith(peer.replace(/ \(.*/, '')) && (r.tool.includes(peer.match(/\((.*)\)/)?.[1] ?? '')));
        t.ok(row, `peer row ${peer}`);
        if (row) t.match(row.status, /^(ok|not installed)$/, `${peer}: ${row.status}`);
      }
      t.ok(json.section.targets.length > 0, 'targets are reported');
      t.ok(json.section.targets.every((x) => x.measured.length > 0), 'each target shows what was measured');
    });
  }
}
