/**
 * A seeded PRNG (mulberry32) for the randomized crash, fuzz and soak runs: a failure prints its
 * seed, and the same seed replays the same choices.
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let z = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0;
      for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = (v >>> (8 * k)) & 0xff;
    }
    return b;
  }
}

/** A seed from the environment variable when set (to replay a failure), else a fresh one. */
export function seedFrom(envName: string): number {
  const v = process.env[envName];
  if (v !== undefined && /^\d+$/.test(v)) return Number(v) >>> 0;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}
