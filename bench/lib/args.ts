/** Command line of `npm run bench`: which questions, how big, how many runs, where to write. */
import { join } from 'node:path';

export interface BenchArgs {
  /** Questions to run, in the order given; empty means all. */
  names: string[];
  /** Multiplies every image size and count (1 = the sizes the targets are stated for). */
  scale: number;
  /** Whether --scale was given (the default run otherwise picks its own, DEFAULT_RUN_SCALE). */
  scaleGiven: boolean;
  /** Timed runs per figure; the table shows the median. */
  runs: number;
  /** Timed runs per peer figure (restic and borg take minutes at full size); default 1. */
  peerRuns: number;
  /** Timed runs of the figures no target reads (warm limits, clone); default 1. */
  sideRuns: number;
  /** Where the JSON results go. */
  outDir: string;
  /** Parent of the scratch directory (images, stores, peer repositories). */
  workDir: string | undefined;
  /** Skip installing and running restic, borg and qemu-img. */
  noPeers: boolean;
  /** Leave the scratch directory in place (for looking at the stores afterwards). */
  keep: boolean;
  /** Cache states to measure (`--cache`); undefined: what the question measures by default. */
  caches: Array<'cold' | 'warm'> | undefined;
}

export const RESULTS_DIR = join(__dirname, '..', 'results');

const USAGE = `usage: npm run bench -- [NAME...] [--scale F] [--runs N] [--peer-runs N] [--side-runs N] [--cache cold|warm|both] [--out DIR] [--work DIR] [--no-peers] [--keep]
  NAME: full, incremental, sparse, rollback-clone, delete-list, hash, served, nbd, replicate (default: all,
        in under 10 minutes on 2 cores: at --scale 0.5 except served and sparse (1: their targets
        are about size) and replicate (0.25: its time is Ceph's); replicate only where Ceph is
        installed, with one run;
        incremental and rollback-clone with a cold cache only: the states their targets read)
  --scale F: image sizes and counts (default 1 for named questions; 1 is the sizes the targets
             are stated for)
  --cache S: cache states to measure where the question has both (default: both when a question
             is named, as above for the default run; cold needs root, else warm only)
  --peer-runs N: timed runs of restic, borg and qemu-img (default 1: minutes each at full size)
  --side-runs N: timed runs of figures no target reads: the limits of warm full snapshots and of
                 clones, and clones themselves (default 1)`;

export function parseArgs(argv: string[], known: readonly string[]): BenchArgs {
  const a: BenchArgs = { names: [], scale: 1, scaleGiven: false, runs: 3, peerRuns: 0, sideRuns: 0, outDir: RESULTS_DIR, workDir: undefined, noPeers: false, keep: false, caches: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n${USAGE}`);
      return v;
    };
    switch (arg) {
      case '--scale': {
        a.scale = Number(value());
        a.scaleGiven = true;
        if (!(a.scale > 0 && a.scale <= 4)) throw new Error(`--scale must be a number in (0, 4]\n${USAGE}`);
        break;
      }
      case '--runs': {
        a.runs = Number(value());
        if (!Number.isInteger(a.runs) || a.runs < 1 || a.runs > 50) throw new Error(`--runs must be an integer from 1 to 50\n${USAGE}`);
        break;
      }
      case '--peer-runs': {
        a.peerRuns = Number(value());
        if (!Number.isInteger(a.peerRuns) || a.peerRuns < 1 || a.peerRuns > 50) throw new Error(`--peer-runs must be an integer from 1 to 50\n${USAGE}`);
        break;
      }
      case '--side-runs': {
        a.sideRuns = Number(value());
        if (!Number.isInteger(a.sideRuns) || a.sideRuns < 1 || a.sideRuns > 50) throw new Error(`--side-runs must be an integer from 1 to 50\n${USAGE}`);
        break;
      }
      case '--cache': {
        const v = value();
        if (v !== 'cold' && v !== 'warm' && v !== 'both') throw new Error(`--cache must be cold, warm or both\n${USAGE}`);
        a.caches = v === 'both' ? ['cold', 'warm'] : [v];
        break;
      }
      case '--out': a.outDir = value(); break;
      case '--work': a.workDir = value(); break;
      case '--no-peers': a.noPeers = true; break;
      case '--keep': a.keep = true; break;
      case '-h': case '--help': throw new Error(USAGE);
      default:
        if (arg.startsWith('-') || !known.includes(arg)) throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
        if (!a.names.includes(arg)) a.names.push(arg);
    }
  }
  if (a.peerRuns === 0) a.peerRuns = 1;
  if (a.sideRuns === 0) a.sideRuns = Math.min(1, a.runs);
  return a;
}
