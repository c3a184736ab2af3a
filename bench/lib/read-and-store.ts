/**
 * A reference workload for a snapshot that stores new blocks: the blocks it must read, read
 * cold by one serial reader, while as many 4 MiB files as it stores are written and fdatasynced,
 * three at a time. It is what this disk takes for that I/O done one plain way, not a lower bound:
 * more readers, or writes whose syncs are batched, can finish sooner, and a snapshot may. Runs in
 * this process on libuv's pool: no process start-up in the figure.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCK } from './images';
import type { Sample } from './measure';

const WRITERS = 3;

/** Reads BLOCK bytes at each of `offsets` of `path` while `stores` files of BLOCK bytes are written durably under `dir`. */
export async function readAndStore(path: string, offsets: number[], dir: string, stores: number): Promise<Sample> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const data = randomBytes(BLOCK);
  const start = process.hrtime.bigint();
  const read = async () => {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(BLOCK);
      for (const offset of offsets) await fh.read(buf, 0, BLOCK, offset);
    } finally {
      await fh.close();
    }
  };
  let next = 0;
  const write = async () => {
    for (let i; (i = next++) < stores;) {
      const fh = await open(join(dir, `b${i}`), 'wx', 0o600);
      try {
        await fh.write(data, 0, BLOCK, 0);
        await fh.datasync();
      } finally {
        await fh.close();
      }
    }
  };
  try {
    await Promise.all([read(), ...Array.from({ length: WRITERS }, write)]);
    return { seconds: Number(process.hrtime.bigint() - start) / 1e9 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
