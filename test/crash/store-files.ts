/**
 * What a data dir holds on disk, read without the daemon: the block files, the granule files
 * (a cache beside them, docs/design.md *Granule file*), the temp files of both, and the files of
 * copy-on-write layers. The crash runs hold these against what the catalog says.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface StoreFiles {
  /** Digests that have a block file. */
  blocks: Set<string>;
  /** Digests that have a granule file. */
  granules: Set<string>;
  /** Names in blocks/tmp and granules/tmp. */
  temp: string[];
  /** Every file below cow/, relative to it. */
  cow: string[];
}

export function storeFiles(dataDir: string): StoreFiles {
  return {
    blocks: fannedOut(join(dataDir, 'blocks')),
    granules: fannedOut(join(dataDir, 'granules')),
    temp: [...namesIn(join(dataDir, 'blocks', 'tmp')).map((n) => `blocks/tmp/${n}`), ...namesIn(join(dataDir, 'granules', 'tmp')).map((n) => `granules/tmp/${n}`)],
    cow: filesBelow(join(dataDir, 'cow'), ''),
  };
}

function fannedOut(root: string): Set<string> {
  const out = new Set<string>();
  for (const fan of namesIn(root)) {
    if (!/^[0-9a-f]{3}$/.test(fan)) continue;
    for (const f of readdirSync(join(root, fan))) out.add(f);
  }
  return out;
}

function namesIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

function filesBelow(dir: string, prefix: string): string[] {
  const out: string[] = [];
  for (const n of namesIn(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...filesBelow(p, `${prefix}${n}/`));
    else out.push(`${prefix}${n}`);
  }
  return out;
}
