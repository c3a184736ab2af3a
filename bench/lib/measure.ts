/** Repeated runs and their medians: every figure in a table is the median of `runs` samples. */

export interface Sample {
  seconds: number;
  peakRssBytes?: number | null;
  /** Bytes the store (or the peer's repository, or the copy) grew by. */
  growthBytes?: number | null;
  /** Bytes of the image the operation covered, when it differs per run. */
  logicalBytes?: number;
  /** Anything else worth keeping per run (job counters). */
  extra?: Record<string, number>;
}

export interface Measured {
  seconds: number;
  samples: number[];
  peakRssBytes: number | null;
  growthBytes: number | null;
  logicalBytes: number | null;
  extra: Record<string, number>;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The p-th percentile (0..100) by nearest rank. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Seconds since `start` (from process.hrtime.bigint()). */
export function since(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Runs `once` `runs` times (each run prepares its own state inside, outside its timed part) and
 * reduces the samples: median time, median growth, the highest peak RSS seen.
 */
export async function repeat(runs: number, once: (run: number) => Promise<Sample>): Promise<Measured> {
  const samples: Sample[] = [];
  for (let i = 0; i < runs; i++) samples.push(await once(i));
  return reduce(samples);
}

/**
 * Like repeat, for several tools at once, their runs taken in turn (a, b, a, b, ...): on a
 * machine whose speed drifts from minute to minute (page-cache state, a neighbour, the host
 * giving memory back) each tool then sees the same drift, where all of one tool's runs and then
 * all of the other's would put the drift into the ratio.
 */
export async function alternate(runs: number, ...onces: Array<(run: number) => Promise<Sample>>): Promise<Measured[]> {
  const samples: Sample[][] = onces.map(() => []);
  for (let i = 0; i < runs; i++) {
    for (const [k, once] of onces.entries()) samples[k]!.push(await once(i));
  }
  return samples.map(reduce);
}

function reduce(samples: Sample[]): Measured {
  const pick = (f: (s: Sample) => number | null | undefined): number[] =>
    samples.map(f).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const rss = pick((s) => s.peakRssBytes);
  const growth = pick((s) => s.growthBytes);
  const logical = pick((s) => s.logicalBytes);
  const extra: Record<string, number> = {};
  for (const k of new Set(samples.flatMap((s) => Object.keys(s.extra ?? {})))) extra[k] = median(pick((s) => s.extra?.[k]));
  return {
    seconds: median(samples.map((s) => s.seconds)),
    samples: samples.map((s) => s.seconds),
    peakRssBytes: rss.length ? Math.max(...rss) : null,
    growthBytes: growth.length ? median(growth) : null,
    logicalBytes: logical.length ? median(logical) : null,
    extra,
  };
}
