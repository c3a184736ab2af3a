/**
 * A one-line progress bar on a terminal: bytes done of total, throughput over the last few
 * seconds (a moving window, so a stall shows up as a falling rate instead of being averaged
 * away), and the ETA that rate implies. Redraws at most ten times a second. A terminal too narrow
 * for everything loses the bar before the numbers; one with TERM=dumb gets no escape codes (a
 * carriage return and spaces take the line back).
 */
import type { JobPhase } from '../engine/types';
import { formatBytes, formatDuration, formatRate } from './format';

const REDRAW_INTERVAL_MS = 100;
const RATE_WINDOW_MS = 5_000;

interface Sample {
  at: number;
  done: number;
}

export interface ProgressLine {
  label: string;
  done: number;
  total: number;
  /** Units per second, or NaN while unknown. */
  rate: number;
  unit?: 'bytes' | 'blocks';
  /** The pass a job of two is in: the operator deciding on a cancel needs it (Job.phase). */
  phase?: JobPhase;
  width: number;
}

/** The text of one progress line; separate from the drawing so it can be tested. */
export function renderProgress(p: ProgressLine): string {
  const pct = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
  const pctText = `${Math.floor(pct * 100)}%`.padStart(4);
  const blocks = p.unit === 'blocks';
  const amounts = blocks ? `${p.done}/${p.total} blocks` : `${formatBytes(p.done)}/${formatBytes(p.total)}`;
  const rate = !Number.isFinite(p.rate) ? '-' : blocks ? `${p.rate.toFixed(0)} blocks/s` : formatRate(p.rate);
  const eta = Number.isFinite(p.rate) && p.rate > 0 && p.total > p.done ? `ETA ${formatDuration((p.total - p.done) / p.rate)}` : '';
  const tail = ` ${pctText}${p.phase ? ` ${p.phase}` : ''}  ${amounts}  ${rate}${eta ? `  ${eta}` : ''}`;
  // The last column stays free: a line that fills it wraps on some terminals.
  const fit = Math.max(20, p.width - 1);
  const barWidth = Math.min(40, fit - p.label.length - tail.length - 3);
  if (barWidth >= 10) {
    const filled = Math.round(pct * barWidth);
    return `${p.label} [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]${tail}`;
  }
  // Too narrow for a bar: the numbers say more than the bar or the whole label.
  const label = p.label.slice(0, Math.max(0, fit - tail.length));
  return `${label}${tail}`.slice(0, fit);
}

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly label: string;
  private samples: Sample[] = [];
  private lastDraw = 0;
  private drawn = false;
  private last: { done: number; total: number; unit: 'bytes' | 'blocks'; phase?: JobPhase } = { done: 0, total: 0, unit: 'bytes' };
  /** TERM=dumb: no erase-line escape; the longest line drawn, for spaces to cover instead. */
  private readonly dumb: boolean;
  private widest = 0;

  constructor(stream: NodeJS.WriteStream, label: string, o: { dumb?: boolean } = {}) {
    this.stream = stream;
    this.label = label;
    this.dumb = o.dumb ?? process.env.TERM === 'dumb';
  }

  update(done: number, total: number, now: number = Date.now(), unit: 'bytes' | 'blocks' = 'bytes', phase?: JobPhase): void {
    const phaseChanged = phase !== this.last.phase;
    this.last = { done, total, unit, ...(phase !== undefined ? { phase } : {}) };
    this.samples.push({ at: now, done });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    if (now - this.lastDraw < REDRAW_INTERVAL_MS && !phaseChanged) return;
    this.lastDraw = now;
    this.draw();
  }

  /** Removes the line, e.g. before printing a prompt or the result. */
  clear(): void {
    if (!this.drawn) return;
    this.stream.write(this.dumb ? `\r${' '.repeat(this.widest)}\r` : '\r\x1b[2K');
    this.drawn = false;
  }

  /** Draws the last state again (after a prompt was answered). */
  redraw(): void {
    this.draw();
  }

  private draw(): void {
    const first = this.samples[0];
    const lastSample = this.samples[this.samples.length - 1];
    const span = first && lastSample ? lastSample.at - first.at : 0;
    const rate = span >= 500 && first && lastSample ? ((lastSample.done - first.done) * 1000) / span : NaN;
    // A terminal that reports no size (a serial console, `script`) has 0 columns: use 80.
    const line = renderProgress({
      label: this.label, done: this.last.done, total: this.last.total, unit: this.last.unit, rate, width: this.stream.columns || 80,
      ...(this.last.phase !== undefined ? { phase: this.last.phase } : {}),
    });
    if (this.dumb) {
      this.stream.write(`\r${line.padEnd(this.widest)}`);
      this.widest = Math.max(this.widest, line.length);
    } else {
      this.stream.write(`\r\x1b[2K${line}`);
    }
    this.drawn = true;
  }
}
