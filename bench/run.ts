/**
 * `npm run bench [-- NAME... --scale F --runs N]`: runs the questions in one process on files it
 * generates, prints each table as markdown, and writes `<out>/<name>.json` plus `<out>/report.md`.
 * Exits non-zero when a question failed (a missed target is a result, not a failure).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from './lib/args';
import { BenchContext, type Question } from './lib/context';
import { Peers } from './lib/peers';
import { machineInfo, markdown, writeJson, type Section } from './lib/report';
import { canDropCaches } from './lib/system';
import { full } from './full';
import { incremental } from './incremental';
import { sparse } from './sparse';
import { rollbackClone } from './rollback-clone';
import { deleteList } from './delete-list';
import { hash } from './hash';
import { served } from './served';
import { nbd } from './nbd';
import { replicateQuestion } from './replicate';

/** What the scratch directory peaked at in a default run (bench/README.md, run time). */
const SCRATCH_BYTES_AT_SCALE_1 = 45e9;
/** Scale of the default run (no question named, no --scale): see defaultRunContext. */
const DEFAULT_RUN_SCALE = 0.5;
/** The default run's scratch peak against a run at scale 1: the served question's 16 GiB disk and its store. */
const DEFAULT_RUN_SCRATCH = 0.75;

const QUESTIONS: Question[] = [full, incremental, sparse, rollbackClone, deleteList, hash, served, nbd, replicateQuestion];

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, QUESTIONS.map((q) => q.name));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const defaultRun = args.names.length === 0;
  const selected = defaultRun ? QUESTIONS : QUESTIONS.filter((q) => args.names.includes(q.name));
  const base = args.workDir ?? tmpdir();
  mkdirSync(base, { recursive: true });
  const scratch = mkdtempSync(join(base, 'blocksnap-bench-'));
  const begun = Date.now();
  const log = (s: string): void => { process.stderr.write(`bench [${((Date.now() - begun) / 1000).toFixed(0)} s]: ${s}\n`); };
  const info = {
    startedAt: new Date().toISOString(), scale: args.scale, runs: args.runs, peerRuns: args.peerRuns, sideRuns: args.sideRuns, ...machineInfo(), kernel: release(),
    dropCaches: canDropCaches(), loadAverageAtStart: loadavg(),
  };
  const scaleText = defaultRun && !args.scaleGiven ? `scale ${DEFAULT_RUN_SCALE} (the default run; served and sparse at 1, replicate at 0.25)` : `scale ${args.scale}`;
  log(`scratch ${scratch}; ${scaleText}; ${args.runs} runs; ${info.dropCaches ? 'cold and warm cache' : 'warm cache only (not root)'}`);
  // At scale 1 the scratch directory peaks near 40 GB (images, stores, peer repositories); a full
  // disk would fail the questions that follow and anything else writing to it.
  const fs = statfsSync(scratch);
  const free = fs.bavail * fs.bsize;
  const needed = SCRATCH_BYTES_AT_SCALE_1 * (defaultRun && !args.scaleGiven ? DEFAULT_RUN_SCRATCH : args.scale);
  if (free < needed) log(`warning: ${(free / 1e9).toFixed(0)} GB free under ${base}, the run may need ~${(needed / 1e9).toFixed(0)} GB (use --work DIR or a smaller --scale)`);
  const peers = Peers.prepare(scratch, !args.noPeers, log);
  const ctx = new BenchContext(args, scratch, peers, log);

  const started = Date.now();
  let failed = 0;
  try {
    for (const q of selected) {
      const t0 = Date.now();
      const skip = defaultRun ? q.skipInDefaultRun?.() ?? null : null;
      if (skip !== null) {
        log(`${q.name}: skipped: ${skip}`);
        process.stdout.write(`\n${q.name}: skipped: ${skip}\n`);
        continue;
      }
      log(`${q.name}: running`);
      try {
        const qctx = defaultRun ? defaultRunContext(ctx, q) : ctx;
        const section = await q.run(qctx);
        process.stdout.write(`\n${markdown(section)}`);
        writeJson(args.outDir, q.name, { ...info, scale: qctx.scale, runs: qctx.runs, peerRuns: qctx.peerRuns, sideRuns: qctx.sideRuns, finishedAt: new Date().toISOString(), seconds: (Date.now() - t0) / 1000, section });
        log(`${q.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      } catch (err) {
        failed++;
        log(`${q.name} failed: ${(err as Error).stack ?? err}`);
        writeJson(args.outDir, q.name, { ...info, finishedAt: new Date().toISOString(), error: String((err as Error).message ?? err) });
      }
    }
  } finally {
    if (!args.keep) rmSync(scratch, { recursive: true, force: true });
  }
  writeReport(args.outDir);
  const total = (Date.now() - started) / 1000;
  log(`total wall time ${Math.floor(total / 60)} min ${Math.round(total % 60)} s (${selected.map((q) => q.name).join(', ')}; load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')})`);
  return failed > 0 ? 1 : 0;
}

/**
 * The default run (no question named) answers every question in under 10 minutes on 2 cores:
 * at half the stated sizes, in the cache states the targets read. The ratio targets compare
 * figures measured in the same run, which hold at that size; the absolute ones (delete time, peak
 * RSS) name in their verdict the size they were measured at and the size they are stated for.
 * --scale, --runs and --cache given on the command line win.
 */
function defaultRunContext(ctx: BenchContext, q: Question): BenchContext {
  let c = ctx.withScale(q.defaultRunScale ?? DEFAULT_RUN_SCALE);
  if (q.defaultCaches !== undefined) c = c.withDefaultCaches(q.defaultCaches);
  return c;
}

/**
 * report.md: every question's latest table in `outDir`, so that questions run one at a time
 * still add up to one report.
 */
function writeReport(outDir: string): void {
  const parts = ['# blocksnap bench\n'];
  for (const q of QUESTIONS) {
    const file = join(outDir, `${q.name}.json`);
    if (!existsSync(file)) continue;
    const r = JSON.parse(readFileSync(file, 'utf8')) as { section?: Section; startedAt: string; scale: number; runs: number; peerRuns?: number; sideRuns?: number; cpus: number; cpuModel: string; loadAverageAtStart: number[] };
    if (!r.section) continue;
    parts.push(`${markdown(r.section)}\n_${r.startedAt}: scale ${r.scale}, median of ${r.runs} runs (peers ${r.peerRuns ?? r.runs}${r.sideRuns !== undefined ? `, figures no target reads ${r.sideRuns}` : ''}), ${r.cpus} × ${r.cpuModel}, load average at start ${r.loadAverageAtStart.map((l) => l.toFixed(2)).join(' ')}_\n`);
  }
  writeFileSync(join(outDir, 'report.md'), parts.join('\n'));
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
