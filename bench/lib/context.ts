/** What every question gets: its arguments, a scratch directory, the peers, and cache control. */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchArgs } from './args';
import { BenchDaemon, type DaemonOptions } from './daemon';
import type { Peers } from './peers';
import type { Section } from './report';
import { canDropCaches, dropCaches, warm } from './system';

export type Cache = 'cold' | 'warm';

export class BenchContext {
  /**
   * Peer repositories holding one backup of the standard image (restic: its only snapshot of that
   * path; borg: archive a0), keyed 'restic-none', 'restic-default', 'borg-none' and
   * 'borg-default'. The full question makes them; the incremental and restore questions use them instead of backing the same 3 GiB
   * up again (minutes per peer at full size).
   */
  readonly peerBases: Map<string, string>;

  constructor(readonly args: BenchArgs, readonly scratch: string, readonly peers: Peers, readonly log: (s: string) => void,
    peerBases?: Map<string, string>) {
    this.peerBases = peerBases ?? new Map();
  }

  get scale(): number { return this.args.scale; }
  get runs(): number { return this.args.runs; }
  get peerRuns(): number { return this.args.peerRuns; }
  get sideRuns(): number { return this.args.sideRuns; }

  /** The same context at another scale (the default run's choice, unless --scale chose). */
  withScale(scale: number): BenchContext {
    if (this.args.scaleGiven || scale === this.args.scale) return this;
    return new BenchContext({ ...this.args, scale }, this.scratch, this.peers, this.log, this.peerBases);
  }

  /** The same context measuring `caches` unless --cache chose (the default run's choice per question). */
  withDefaultCaches(caches: Cache[]): BenchContext {
    if (this.args.caches !== undefined) return this;
    return new BenchContext({ ...this.args, caches }, this.scratch, this.peers, this.log, this.peerBases);
  }

  /**
   * Cache states to measure: those asked for that this machine can measure (cold needs root to
   * drop the page cache); warm when none of them can be.
   */
  get caches(): Cache[] {
    const possible: Cache[] = canDropCaches() ? ['cold', 'warm'] : ['warm'];
    const wanted = this.args.caches;
    if (wanted === undefined) return possible;
    const both = possible.filter((c) => wanted.includes(c));
    return both.length > 0 ? both : ['warm'];
  }

  /** Puts `files` into the requested cache state right before a timed run. */
  prepareCache(cache: Cache, ...files: string[]): void {
    if (cache === 'cold') dropCaches();
    else for (const f of files) warm(f);
  }

  /** prepareCache for a sparse file: warm reads only its data `ranges`. */
  prepareSparse(cache: Cache, file: string, ranges: Array<{ offset: number; length: number }>): void {
    if (cache === 'cold') dropCaches();
    else warm(file, ranges);
  }

  /** A fresh empty directory under the scratch directory. */
  dir(...parts: string[]): string {
    const d = join(this.scratch, ...parts);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Runs `fn` against a daemon on a fresh data dir, stopping the daemon and removing its store after. */
  async withDaemon<T>(name: string, o: Omit<DaemonOptions, 'dir'>, fn: (d: BenchDaemon) => Promise<T>): Promise<T> {
    const dir = this.dir(name);
    const d = await BenchDaemon.start({ ...o, dir });
    try {
      return await fn(d);
    } finally {
      await d.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

export interface Question {
  name: string;
  run(ctx: BenchContext): Promise<Section>;
  /** Cache states of the default run (every question) when not all: those its targets read. */
  defaultCaches?: Cache[];
  /**
   * The scale of this question in the default run, when not DEFAULT_RUN_SCALE: 1 where the target
   * depends on the size itself, less where the time is someone else's (Ceph) and the ratio holds.
   */
  defaultRunScale?: number;
  /** Why the default run leaves this question out on this machine (it still runs when named). */
  skipInDefaultRun?(): string | null;
}
