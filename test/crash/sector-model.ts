/**
 * What a served disk may hold after a crash, sector by sector. Every write stamps each 512-byte
 * sector it covers with its own version number (and the sector's index), so a sector read back
 * names the write it came from, and bytes of no write at all are caught.
 *
 * Per sector the model keeps the version that must survive a crash (`stable`: flushed, written
 * with FUA, or frozen by a snapshot) and the versions written since, which may or may not have
 * reached the disk (`unsure`). NBD promises nothing about a write that was not flushed, but it
 * must never yield anything else: neither older content than the last flush nor foreign bytes.
 */
export const SECTOR = 512;
/** The version of a sector that reads as zeros (zeroed, trimmed, or a hole of the base). */
export const ZERO = -1;

/** Writes version `v`'s stamp of sector `s` into `out` at `at`. */
export function stamp(v: number, s: number, out: Buffer, at: number): void {
  if (v === ZERO) {
    out.fill(0, at, at + SECTOR);
    return;
  }
  out.writeUInt32LE(v >>> 0, at);
  out.writeUInt32LE(s >>> 0, at + 4);
  // xorshift32 seeded by both, so that no two (version, sector) pairs share their bytes.
  let x = (Math.imul(v + 1, 0x9e3779b1) ^ Math.imul(s + 1, 0x85ebca6b)) | 1;
  for (let i = 8; i < SECTOR; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x, at + i);
  }
}

/** The content of `count` sectors from `first`, all of version `v`. */
export function stamped(v: number, first: number, count: number): Buffer {
  const b = Buffer.allocUnsafe(count * SECTOR);
  for (let i = 0; i < count; i++) stamp(v, first + i, b, i * SECTOR);
  return b;
}

const scratch = Buffer.alloc(SECTOR);

/** The version sector `s` holds in `buf` at `at`, or null for bytes no write ever made. */
export function versionAt(buf: Buffer, at: number, s: number): number | null {
  const v = buf.readUInt32LE(at);
  if (v === 0 && buf.readUInt32LE(at + 4) === 0 && isZero(buf, at)) return ZERO;
  if (buf.readUInt32LE(at + 4) !== s >>> 0) return null;
  stamp(v | 0, s, scratch, 0);
  return scratch.compare(buf, at, at + SECTOR) === 0 ? v | 0 : null;
}

function isZero(buf: Buffer, at: number): boolean {
  for (let i = at; i < at + SECTOR; i++) if (buf[i] !== 0) return false;
  return true;
}

/** The versions of every sector of `content`; throws naming the first sector that is garbage. */
export function versionsOf(content: Buffer, what: string): Int32Array {
  const out = new Int32Array(content.length / SECTOR);
  for (let s = 0; s < out.length; s++) {
    const v = versionAt(content, s * SECTOR, s);
    if (v === null) throw new Error(`${what}: sector ${s} holds bytes that no write made`);
    out[s] = v;
  }
  return out;
}

export class SectorModel {
  readonly stable: Int32Array;
  /** What a reader sees now: every acknowledged write applied. */
  readonly latest: Int32Array;
  private readonly unsure = new Map<number, number[]>();

  constructor(initial: Int32Array) {
    this.stable = initial.slice();
    this.latest = initial.slice();
  }

  /** A write of version `v` over `count` sectors was sent: from now on a crash may keep it. */
  sent(first: number, count: number, v: number): void {
    for (let s = first; s < first + count; s++) {
      const u = this.unsure.get(s);
      if (u) u.push(v);
      else this.unsure.set(s, [v]);
    }
  }

  /** The write was acknowledged; with FUA it is durable, and nothing older of its sectors may come back. */
  acked(first: number, count: number, v: number, durable: boolean): void {
    for (let s = first; s < first + count; s++) {
      this.latest[s] = v;
      if (durable) {
        this.stable[s] = v;
        this.unsure.delete(s);
      }
    }
  }

  /**
   * A flush (or a snapshot) was acknowledged while no write was in flight: every acknowledged
   * write is durable now.
   */
  durable(): void {
    this.stable.set(this.latest);
    this.unsure.clear();
  }

  /** The disk holds `content` now (a rollback, or what a restart found). */
  reset(content: Int32Array): void {
    this.stable.set(content);
    this.latest.set(content);
    this.unsure.clear();
  }

  /** The sectors of `observed` whose version a crash could not have left there (at most `limit`). */
  impossible(observed: Int32Array, limit = 8): string[] {
    const bad: string[] = [];
    for (let s = 0; s < observed.length && bad.length < limit; s++) {
      const v = observed[s]!;
      if (v === this.stable[s] || this.unsure.get(s)?.includes(v)) continue;
      bad.push(`sector ${s} holds version ${v}, allowed ${[this.stable[s], ...(this.unsure.get(s) ?? [])].join('/')}`);
    }
    return bad;
  }
}

/** The first sectors where two version maps differ (at most `limit`), for failure messages. */
export function differences(got: Int32Array, want: Int32Array, limit = 8): string[] {
  const out: string[] = [];
  for (let s = 0; s < want.length && out.length < limit; s++) {
    if (got[s] !== want[s]) out.push(`sector ${s}: ${got[s]} instead of ${want[s]}`);
  }
  return out;
}
