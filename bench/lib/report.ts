/**
 * One question's results: rows (blocksnap, the physical limit, the peers) and targets, printed as
 * a markdown table and written as JSON. A row is "ours", a "limit" or a "peer"; its ratio is its
 * time over the time of the row named as its limit, measured in the same run on the same file.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Measured } from './measure';

export type RowKind = 'ours' | 'limit' | 'peer';

export interface Row {
  /** The operation and its conditions, e.g. "full snapshot, cold cache". */
  case: string;
  tool: string;
  kind: RowKind;
  /** `ok`, `not installed`, or `failed: …` (then the figures are null). */
  status: string;
  seconds: number | null;
  samples: number[];
  logicalBytes: number | null;
  mbPerSecond: number | null;
  peakRssBytes: number | null;
  growthBytes: number | null;
  /** `tool` of the row in the same case (or named case) this one is compared with. */
  limit: string | null;
  ratio: number | null;
  /**
   * Run by run, this row's time over its limit's, where the two were measured in the same runs
   * (alternating, or one after the other in each run); null where they were not paired.
   */
  runRatios: number[] | null;
  note: string;
  extra: Record<string, number>;
}

export interface Target {
  what: string;
  target: string;
  measured: string;
  met: boolean | null;
  /** The fewest timed samples behind the figures compared; below MIN_SAMPLES the verdict is only indicative. */
  samples: number | null;
}

/** A target is met or missed on medians of at least this many samples on each side. */
export const MIN_SAMPLES = 3;

export interface Section {
  name: string;
  title: string;
  rows: Row[];
  targets: Target[];
  notes: string[];
}

export class SectionBuilder {
  readonly rows: Row[] = [];
  readonly targets: Target[] = [];
  readonly notes: string[] = [];
  private readonly limits = new Map<Row, Row>();

  constructor(readonly name: string, readonly title: string) {}

  add(c: string, tool: string, kind: RowKind, m: Measured, o: { logicalBytes?: number; limit?: { case?: string; tool: string }; paired?: boolean; note?: string } = {}): Row {
    const logical = m.logicalBytes ?? o.logicalBytes ?? null;
    const row: Row = {
      case: c, tool, kind, status: 'ok', seconds: m.seconds, samples: m.samples, logicalBytes: logical,
      mbPerSecond: logical !== null && m.seconds > 0 ? logical / 1e6 / m.seconds : null,
      peakRssBytes: m.peakRssBytes, growthBytes: m.growthBytes, limit: null, ratio: null, runRatios: null, note: o.note ?? '', extra: m.extra,
    };
    if (o.limit) {
      const ref = this.find(o.limit.case ?? c, o.limit.tool);
      row.limit = o.limit.case && o.limit.case !== c ? `${o.limit.tool} (${o.limit.case})` : o.limit.tool;
      if (ref?.seconds) row.ratio = m.seconds / ref.seconds;
      if (ref) this.limits.set(row, ref);
      if (o.paired && ref && ref.samples.length === m.samples.length) row.runRatios = m.samples.map((x, i) => x / ref.samples[i]!);
    }
    this.rows.push(row);
    return row;
  }

  /** A row for a tool that could not run here. */
  missing(c: string, tool: string, status: string): void {
    this.rows.push({
      case: c, tool, kind: 'peer', status, seconds: null, samples: [], logicalBytes: null, mbPerSecond: null,
      peakRssBytes: null, growthBytes: null, limit: null, ratio: null, runRatios: null, note: '', extra: {},
    });
  }

  find(c: string, tool: string): Row | undefined {
    return this.rows.find((r) => r.case === c && r.tool === tool && r.status === 'ok');
  }

  /**
   * A verdict. `samples`: the fewest timed samples behind the compared figures (see samplesOf);
   * with fewer than MIN_SAMPLES the verdict is printed as indicative, neither met nor missed.
   */
  target(what: string, target: string, measured: string, met: boolean | null, samples?: number): void {
    const few = samples !== undefined && samples < MIN_SAMPLES;
    this.targets.push({ what, target, measured, met: few ? null : met, samples: samples ?? null });
  }

  /** The fewest samples behind a row's ratio: its own and its limit's. */
  samplesOf(row: Row): number {
    const ref = this.limits.get(row);
    return Math.min(row.samples.length, ref?.samples.length ?? Infinity);
  }

  note(s: string): void {
    this.notes.push(s);
  }

  build(): Section {
    return { name: this.name, title: this.title, rows: this.rows, targets: this.targets, notes: this.notes };
  }
}

const fmt = (v: number | null, digits: number): string => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(digits));
const mib = (v: number | null): string => (v === null ? '–' : (v / 1048576).toFixed(v < 10 * 1048576 ? 1 : 0));

export function markdown(s: Section): string {
  const lines = [`### ${s.title}`, '', '| case | tool | runs | wall s (median) | min–max s | MB/s | peak RSS MiB | growth MiB | × limit | run by run × limit | note |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |'];
  for (const r of s.rows) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.case} | ${r.tool} | | ${r.status} | | | | | | | |`);
      continue;
    }
    const secs = (v: number | null): string => fmt(v, v !== null && v < 1 ? 4 : 2);
    const spread = r.samples.length > 1 ? `${secs(Math.min(...r.samples))}–${secs(Math.max(...r.samples))}` : '';
    const ratio = r.ratio === null ? (r.kind === 'limit' ? 'limit' : '–') : `${r.ratio.toFixed(2)}× ${r.limit}`;
    const perRun = r.runRatios === null ? '' : r.runRatios.map((x) => `${x.toFixed(2)}×`).join(', ');
    lines.push(`| ${r.case} | ${r.tool} | ${r.samples.length} | ${secs(r.seconds)} | ${spread} | ${fmt(r.mbPerSecond, 0)} | ${mib(r.peakRssBytes)} | ${mib(r.growthBytes)} | ${ratio} | ${perRun} | ${r.note} |`);
  }
  if (s.targets.length > 0) {
    lines.push('', '| target | wanted | measured | met |', '| --- | --- | --- | --- |');
    for (const t of s.targets) lines.push(`| ${t.what} | ${t.target} | ${t.measured} | ${verdict(t)} |`);
  }
  for (const n of s.notes) lines.push('', `- ${n}`);
  return lines.join('\n') + '\n';
}

function verdict(t: Target): string {
  if (t.samples !== null && t.samples < MIN_SAMPLES) return `${t.samples} sample${t.samples === 1 ? '' : 's'}, indicative`;
  return t.met === null ? 'n/a' : t.met ? 'yes' : 'NO';
}

export interface RunInfo {
  startedAt: string;
  finishedAt: string;
  scale: number;
  runs: number;
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  kernel: string;
  node: string;
  dropCaches: boolean;
  loadAverageAtStart: number[];
}

export function machineInfo(): Pick<RunInfo, 'cpus' | 'cpuModel' | 'memoryBytes' | 'node'> {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), node: process.version };
}

/** Writes `<outDir>/<name>.json` atomically (a reader never sees half a file). */
export function writeJson(outDir: string, name: string, value: unknown): string {
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, `${name}.json`);
  writeFileSync(`${path}.tmp`, JSON.stringify(value, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
  return path;
}
