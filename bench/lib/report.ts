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
  note: string;
  extra: Record<string, number>;
}

export interface Target {
  what: string;
  target: string;
  measured: string;
  met: boolean | null;
}

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

  constructor(readonly name: string, readonly title: string) {}

  add(c: string, tool: string, kind: RowKind, m: Measured, o: { logicalBytes?: number; limit?: { case?: string; tool: string }; note?: string } = {}): Row {
    const logical = m.logicalBytes ?? o.logicalBytes ?? null;
    const row: Row = {
      case: c, tool, kind, status: 'ok', seconds: m.seconds, samples: m.samples, logicalBytes: logical,
      mbPerSecond: logical !== null && m.seconds > 0 ? logical / 1e6 / m.seconds : null,
      peakRssBytes: m.peakRssBytes, growthBytes: m.growthBytes, limit: null, ratio: null, note: o.note ?? '', extra: m.extra,
    };
    if (o.limit) {
      const ref = this.find(o.limit.case ?? c, o.limit.tool);
      row.limit = o.limit.case && o.limit.case !== c ? `${o.limit.tool} (${o.limit.case})` : o.limit.tool;
      if (ref?.seconds) row.ratio = m.seconds / ref.seconds;
    }
    this.rows.push(row);
    return row;
  }

  /** A row for a tool that could not run here. */
  missing(c: string, tool: string, status: string): void {
    this.rows.push({
      case: c, tool, kind: 'peer', status, seconds: null, samples: [], logicalBytes: null, mbPerSecond: null,
      peakRssBytes: null, growthBytes: null, limit: null, ratio: null, note: '', extra: {},
    });
  }

  find(c: string, tool: string): Row | undefined {
    return this.rows.find((r) => r.case === c && r.tool === tool && r.status === 'ok');
  }

  target(what: string, target: string, measured: string, met: boolean | null): void {
    this.targets.push({ what, target, measured, met });
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
  const lines = [`### ${s.title}`, '', '| case | tool | wall s | MB/s | peak RSS MiB | growth MiB | × limit | note |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |'];
  for (const r of s.rows) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.case} | ${r.tool} | ${r.status} | | | | | |`);
      continue;
    }
    const ratio = r.ratio === null ? (r.kind === 'limit' ? 'limit' : '–') : `${r.ratio.toFixed(2)}× ${r.limit}`;
    lines.push(`| ${r.case} | ${r.tool} | ${fmt(r.seconds, r.seconds !== null && r.seconds < 1 ? 4 : 2)} | ${fmt(r.mbPerSecond, 0)} | ${mib(r.peakRssBytes)} | ${mib(r.growthBytes)} | ${ratio} | ${r.note} |`);
  }
  if (s.targets.length > 0) {
    lines.push('', '| target | wanted | measured | met |', '| --- | --- | --- | --- |');
    for (const t of s.targets) lines.push(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met === null ? 'n/a' : t.met ? 'yes' : 'NO'} |`);
  }
  for (const n of s.notes) lines.push('', `- ${n}`);
  return lines.join('\n') + '\n';
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
