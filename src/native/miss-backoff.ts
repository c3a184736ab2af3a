/**
 * When to try something cheap that may miss, where a miss still costs: after misses in a row the
 * tries thin out (every 2nd, 4th, ... 2^max-th chance is tried) and a hit makes every chance a
 * try again. The Volume uses it for reads on the JS thread that may not be in the page cache.
 */
export class MissBackoff {
  private misses = 0;
  private skip = 0;

  constructor(private readonly max: number) {}

  /** Whether this chance is tried; false means skip it without trying. */
  tryNow(): boolean {
    if (this.skip === 0) return true;
    this.skip--;
    return false;
  }

  /** The outcome of a try that tryNow allowed. */
  record(hit: boolean): void {
    if (hit) {
      this.misses = 0;
      return;
    }
    this.misses = Math.min(this.misses + 1, this.max);
    this.skip = 2 ** this.misses - 1;
  }
}
