/**
 * A short libFuzzer run of the qcow2 reader (native/fuzz/qcow2_fuzz.cc, built with clang,
 * AddressSanitizer and UBSan in the build the C++ unit tests use, test/helpers/sanitized-build.ts)
 * from a seed corpus of small real images made by qemu-img and qemu-io: v2 and v3, tiny clusters,
 * zero clusters, extended L2, compressed clusters, a backing file reference, a persistent dirty
 * bitmap (the bitmaps header extension).
 * Any crash, hang, leak or sanitizer report fails the test. Longer runs: npm run fuzz:qcow2.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { haveQemu, qemuImg, qemuIo } from '../helpers/qemu';
import { buildSanitized, noClang, SANITIZED_DIR } from '../helpers/sanitized-build';

const SECONDS = 20;

const skip = noClang() || haveQemu();
if (skip) t.plan(0, skip);

function seedCorpus(dir: string): void {
  const img = (name: string): string => join(dir, name);
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', img('v3-512.qcow2'), '1M');
  qemuIo(img('v3-512.qcow2'), 'qcow2', 'write -P 1 0 3k', 'write -z 8k 4k');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=512', img('v2-512.qcow2'), '1M');
  qemuIo(img('v2-512.qcow2'), 'qcow2', 'write -P 2 1k 2k');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384,extended_l2=on', img('ext-l2.qcow2'), '1M');
  qemuIo(img('ext-l2.qcow2'), 'qcow2', 'write -P 3 0 1k', 'write -z 4k 2k');
  const raw = join(dir, '..', 'src.raw');
  qemuImg('create', '-q', '-f', 'raw', raw, '64k');
  qemuIo(raw, 'raw', 'write -P 4 0 8k');
  qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, img('compressed.qcow2'));
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'v3-512.qcow2', '-F', 'qcow2', img('backing.qcow2'));
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', img('bitmaps.qcow2'), '1M');
  qemuImg('bitmap', '--add', img('bitmaps.qcow2'), 'b0');
}

t.test(`the qcow2 reader survives ${SECONDS} s of libFuzzer`, async (t) => {
  const build = buildSanitized();
  t.equal(build.status, 0, 'the fuzz target builds');
  if (build.status !== 0) return t.comment(build.out.slice(-4000));

  const dir = t.testdir();
  const corpus = join(dir, 'corpus');
  mkdirSync(corpus);
  seedCorpus(corpus);
  const seeds = readdirSync(corpus).length;
  const r = spawnSync(join(SANITIZED_DIR, 'qcow2_fuzz'), [
    `-max_total_time=${SECONDS}`, '-max_len=131072', '-timeout=10', '-rss_limit_mb=1024',
    `-artifact_prefix=${dir}/`, corpus,
  ], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: (SECONDS + 60) * 1000 });
  const out = `${r.stdout}\n${r.stderr}`;
  const runs = /Done (\d+) runs/.exec(out);
  t.ok(runs, 'the fuzzer finished its time');
  if (runs) t.ok(Number(runs[1]) > 1000, `${runs[1]} inputs from ${seeds} seeds`);
  // A run in which every input fails before the reader (a path the opener refuses) is no test:
  // at the least each valid seed must open.
  const opened = /qcow2_fuzz: (\d+) of (\d+) inputs opened as qcow2/.exec(out);
  t.ok(opened && Number(opened[1]) >= seeds, `inputs that reached the reader: ${opened ? `${opened[1]} of ${opened[2]}` : 'not reported'}`);
  t.notMatch(out, /ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:/, 'no sanitizer or fuzzer report');
  t.same(readdirSync(dir).filter((f) => /^(crash|timeout|oom|leak)-/.test(f)), [], 'no crash artifacts');
  t.equal(r.status, 0);
  if (r.status !== 0) t.comment(out.slice(-4000));
});
