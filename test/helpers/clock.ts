import type { Clock, Timer } from '../../src/scheduler/clock';

/** A clock that moves only when told; timers fire as it passes their time. */
export class ManualClock implements Clock {
  private t: number;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];

  constructor(iso: string) { this.t = Date.parse(iso); }

  now(): Date { return new Date(this.t); }

  setTimer(ms: number, fn: () => void): Timer {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => { timer.live = false; } };
  }

  set(iso: string): void { this.advance(Date.parse(iso) - this.t); }

  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.live && x.at <= this.t);
    this.timers = this.timers.filter((x) => !due.includes(x));
    for (const x of due) { x.live = false; x.fn(); }
  }
}
