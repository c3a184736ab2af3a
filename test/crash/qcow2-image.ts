/**
 * The crash runs' qcow2 disk: guest writes go through QEMU's own format driver (qemu-io) and its
 * content is judged by QEMU too (`qemu-img convert -O raw`, then the same SHA-256 the raw disks
 * get), so a qcow2 file the daemon left half-rewritten or with a broken table cannot pass.
 *
 * Writes fill whole blocks from a few byte patterns (the same block turns up in several
 * snapshots and in the raw disks' clones of each other), zero whole blocks, or change 4 KiB
 * inside a block (a block no other snapshot has).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu';
import type { Random } from '../helpers/random';
import { ImageWriter } from './disk-image';

const PATTERNS = ['0x11', '0x22', '0x33', '0x44', '0x55', '0x66'];

export type ImageFormat = 'raw' | 'qcow2';

export function createQcow2(path: string, bytes: number, blockSize: number, rng: Random): void {
  qemuImg('create', '-q', '-f', 'qcow2', path, String(bytes));
  mutateQcow2(path, bytes, blockSize, rng);
}

/** A guest's worth of change through the qcow2 driver; returns what it did (for failure messages). */
export function mutateQcow2(path: string, bytes: number, blockSize: number, rng: Random): string[] {
  const commands: string[] = [];
  const blocks = Math.ceil(bytes / blockSize);
  for (let n = rng.int(1, 4); n > 0; n--) {
    const at = rng.int(0, blocks - 1) * blockSize;
    const roll = rng.next();
    if (roll < 0.55) commands.push(`write -P ${rng.pick(PATTERNS)} ${at} ${blockSize}`);
    else if (roll < 0.75) commands.push(`write -z ${at} ${blockSize}`);
    else commands.push(`write -P ${rng.int(1, 255)} ${at + 4096 * rng.int(0, blockSize / 4096 - 1)} 4096`);
  }
  qemuIo(path, 'qcow2', ...commands);
  return commands;
}

/** SHA-256 of an image's guest-visible content, whatever its format. */
export function contentSha(path: string, format: ImageFormat): string {
  if (format === 'raw') return ImageWriter.contentSha(path);
  const dir = mkdtempSync(join(tmpdir(), 'bsc-raw-'));
  try {
    const raw = join(dir, 'content.img');
    qemuImg('convert', '-U', '-f', 'qcow2', '-O', 'raw', path, raw);
    return ImageWriter.contentSha(raw);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
