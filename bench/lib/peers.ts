/**
 * The physical limits and the peers, run the way a user would run them on the same file:
 * `dd bs=4M` (sequential read), `cp --sparse=always` (sparse copy, then `sync` of the copy so it is
 * as durable as a snapshot), `qemu-img convert`/`compare`, `restic backup`/`restore` (the
 * repository format restic creates by default, v2 from 0.14 on: encrypted, compression off and the
 * default auto, zstd), `borg create`/`extract` (unencrypted, compression none and the default lz4). Every helper returns one timed Sample; callers drop the page cache first when
 * they want a cold figure.
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Extent } from './images';
import type { Sample } from './measure';
import { diskUsage, ensurePeers, runCommand } from './system';

/** A peer's compression: off, or the peer's default (restic: auto, zstd; borg: lz4). */
export type Compression = 'none' | 'default';

/** Peer command → Debian package. */
const PEER_PACKAGES: Record<string, string> = { restic: 'restic', borg: 'borgbackup', 'qemu-img': 'qemu-utils' };

export class Peers {
  private constructor(readonly available: Set<string>, private readonly scratch: string, private readonly enabled: boolean) {}

  static prepare(scratch: string, enabled: boolean, log: (s: string) => void): Peers {
    return new Peers(enabled ? ensurePeers(PEER_PACKAGES, log) : new Set(), scratch, enabled);
  }

  has(cmd: string): boolean {
    return this.available.has(cmd);
  }

  /** What a peer row says when the peer did not run. */
  get absent(): string {
    return this.enabled ? 'not installed' : 'not run (--no-peers)';
  }

  /** `dd bs=4M` of the whole file to /dev/null. */
  async dd(path: string): Promise<Sample> {
    const r = await runCommand('dd', [`if=${path}`, 'of=/dev/null', 'bs=4M', 'status=none']);
    return { seconds: r.seconds, peakRssBytes: r.peakRssBytes };
  }

  /** `dd bs=4M` of each data extent in turn: the bytes a hole-aware reader cannot avoid. */
  async ddExtents(path: string, extents: Array<Pick<Extent, 'offset' | 'length'>>): Promise<Sample> {
    const script = extents.map((e) => `dd if='${path}' of=/dev/null bs=4M iflag=skip_bytes,count_bytes skip=${e.offset} count=${e.length} status=none`).join(' && ');
    const r = await runCommand('sh', ['-c', script]);
    return { seconds: r.seconds, peakRssBytes: r.peakRssBytes };
  }

  /**
   * Copies `src` into a new file with `dd bs=4M` and fsyncs it. The source should be in the page
   * cache, so that the time is the writing's (a source such as /dev/urandom would put its own
   * generation inside the figure).
   */
  async ddWriteFrom(src: string): Promise<Sample> {
    const out = join(this.scratch, 'dd-write.out');
    try {
      const r = await runCommand('dd', [`if=${src}`, `of=${out}`, 'bs=4M', 'conv=fsync', 'status=none']);
      return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: statSync(src).size };
    } finally {
      rmSync(out, { force: true });
    }
  }

  /** `cp --sparse=always SRC DST && sync DST`; DST is removed afterwards. */
  async cpSparse(src: string, dst: string): Promise<Sample> {
    try {
      const r = await runCommand('sh', ['-c', `cp --sparse=always '${src}' '${dst}' && sync '${dst}'`]);
      return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: diskUsage(dst) };
    } finally {
      rmSync(dst, { force: true });
    }
  }

  /** `qemu-img convert -O raw SRC DST && sync DST` (qemu-img writes holes for zeros by itself). */
  async qemuConvert(src: string, dst: string): Promise<Sample> {
    try {
      const r = await runCommand('sh', ['-c', `qemu-img convert -f raw -O raw '${src}' '${dst}' && sync '${dst}'`]);
      return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: diskUsage(dst) };
    } finally {
      rmSync(dst, { force: true });
    }
  }

  /** `qemu-img compare A B`; throws unless they are identical. */
  async qemuCompare(a: string, b: string): Promise<Sample> {
    const r = await runCommand('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', a, b]);
    return { seconds: r.seconds, peakRssBytes: r.peakRssBytes };
  }

  // ------------------------------------------------------------------ restic

  private resticEnv(repo: string): NodeJS.ProcessEnv {
    return { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(this.scratch, 'restic-cache'), RESTIC_PROGRESS_FPS: '0.1' };
  }

  async resticInit(repo: string): Promise<void> {
    rmSync(repo, { recursive: true, force: true });
    await runCommand('restic', ['init', '--quiet'], { env: this.resticEnv(repo) });
  }

  /** `restic backup [--compression off] FILE`; growth is the repository's. */
  async resticBackup(repo: string, file: string, compression: Compression): Promise<Sample> {
    const before = diskUsage(repo);
    const args = ['backup', '--quiet', ...(compression === 'none' ? ['--compression', 'off'] : []), basename(file)];
    const r = await runCommand('restic', args, { env: this.resticEnv(repo), cwd: dirname(file) });
    return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: diskUsage(repo) - before };
  }

  /**
   * `restic restore latest --path FILE --target DIR`: the latest backup of `file` (this restic has
   * no sparse restore: holes are written).
   */
  async resticRestore(repo: string, file: string, target: string): Promise<Sample> {
    rmSync(target, { recursive: true, force: true });
    try {
      const r = await runCommand('sh', ['-c', `restic restore latest --quiet --path '${file}' --target '${target}' && sync -f '${target}'`], { env: this.resticEnv(repo) });
      return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: diskUsage(target) };
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  }

  // ------------------------------------------------------------------ borg

  private borgEnv(): NodeJS.ProcessEnv {
    return {
      BORG_BASE_DIR: join(this.scratch, 'borg-base'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
      BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes', BORG_PASSPHRASE: '',
    };
  }

  async borgInit(repo: string): Promise<void> {
    rmSync(repo, { recursive: true, force: true });
    await runCommand('borg', ['init', '--encryption', 'none', repo], { env: this.borgEnv() });
  }

  /** `borg create [--compression none] REPO::NAME FILE`; growth is the repository's. */
  async borgCreate(repo: string, archive: string, file: string, compression: Compression): Promise<Sample> {
    const before = diskUsage(repo);
    const args = ['create', ...(compression === 'none' ? ['--compression', 'none'] : []), `${repo}::${archive}`, basename(file)];
    const r = await runCommand('borg', args, { env: this.borgEnv(), cwd: dirname(file) });
    return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: diskUsage(repo) - before };
  }

  /** `borg extract --sparse REPO::NAME` into an empty directory. */
  async borgExtract(repo: string, archive: string, target: string): Promise<Sample> {
    rmSync(target, { recursive: true, force: true });
    mkdirSync(target, { recursive: true });
    try {
      const r = await runCommand('sh', ['-c', `borg extract --sparse '${repo}::${archive}' && sync -f .`], { env: this.borgEnv(), cwd: target });
      return { seconds: r.seconds, peakRssBytes: r.peakRssBytes, growthBytes: diskUsage(target) };
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  }
}
