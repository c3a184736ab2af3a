/**
 * The catalog's list of damaged blocks (catalog/damaged-blocks.ts), as a test looks at it: no
 * wire method shows it (`store verify` would list what it finds itself, hiding who marked it).
 */
import { readFileSync } from 'node:fs';
import type { Engine } from '../../src/engine';
import { Catalog } from '../../src/catalog/catalog';
import { DamagedBlocks, type DamagedBlockRecord } from '../../src/catalog/damaged-blocks';
import { BLOCK_HEADER_SIZE } from '../../src/store/format';
import { blockPath, sha } from './store-damage';

/** A running engine's list (an internal: for the test's eyes only). */
export function marksOf(engine: Engine): DamagedBlocks {
  return (engine as unknown as { repair: { damaged: DamagedBlocks } }).repair.damaged;
}

/** The mark of `hex` in a running engine's list, if any. */
export function markOf(engine: Engine, hex: string): DamagedBlockRecord | undefined {
  return marksOf(engine).get(Buffer.from(hex, 'hex'));
}

/** The marks in the catalog of a data dir no daemon has open, by digest. */
export async function marksIn(dataDir: string, blockSize: number): Promise<Map<string, DamagedBlockRecord>> {
  const catalog = Catalog.open(dataDir, blockSize);
  try {
    return new Map(new DamagedBlocks(catalog).all().map(({ digest, record }) => [digest.toString('hex'), record]));
  } finally {
    await catalog.close();
  }
}

/** The SHA-256 of the payload the block file of `hex` holds now: `hex` itself when it is whole. */
export function payloadDigest(dataDir: string, hex: string): string {
  return sha(readFileSync(blockPath(dataDir, hex)).subarray(BLOCK_HEADER_SIZE));
}
