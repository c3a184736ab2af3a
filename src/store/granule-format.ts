/**
 * Where granule files (a block's hash marks every 64 KiB) live (their byte layout is
 * native/core/granule_file.h and docs/design.md, "Granule file"):
 * `<data-dir>/granules/<hex[0..3]>/<hex>`, the same fan-out as the block files, plus `tmp/` for
 * files being written. A cache beside the store, not part of it:
 * block listings, `store verify` and gc's orphan scan never look here.
 */
import { join } from 'node:path';
import { FANOUT_HEX_CHARS, TMP_DIR } from './format';

export const GRANULES_DIR = 'granules';

export function granulePath(granuleDir: string, digestHex: string): string {
  return join(granuleDir, digestHex.slice(0, FANOUT_HEX_CHARS), digestHex);
}

export function granuleTmpDir(granuleDir: string): string {
  return join(granuleDir, TMP_DIR);
}
