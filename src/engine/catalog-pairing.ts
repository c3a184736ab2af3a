/**
 * Whether the catalog is the block store's own, checked at every start (store-stamp.ts). Blocks
 * are deleted only on the catalog's word (store gc: what it does not reference; the sweep: what it
 * freed), so a catalog that is not the store's must not have it: a lost catalog recreated empty
 * would let gc delete every block, and one restored from last night's backup every block
 * committed since. Such a start is refused (no catalog beside a store of blocks, or a damaged
 * one), or the daemon starts with deletions held until the operator puts the right catalog back
 * or accepts this one (`store accept-catalog`).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BlocksnapError } from '../errors';
import { newStoreId, type Catalog } from '../catalog/catalog';
import { CATALOG_FILE } from '../catalog/schema';
import { BLOCKS_DIR, FANOUT_HEX_CHARS, TMP_DIR } from '../store/format';
import { readStamp, writeStamp, type StoreStamp } from '../store/store-stamp';
import type { EngineLogger } from './engine';

/** Why deletions are held: the catalog is another's, older than the store, or new beside its blocks. */
export interface CatalogHold {
  reason: 'foreign' | 'older' | 'new' | 'unstamped';
  message: string;
}

const FANOUT = new RegExp(`^[0-9a-f]{${FANOUT_HEX_CHARS}}$`);

const ACCEPT = 'blocksnap store accept-catalog';

/** No catalog: no file, or an empty one (LMDB would set a new catalog up in it). */
export function catalogAbsent(dataDir: string): boolean {
  try {
    return statSync(join(dataDir, CATALOG_FILE)).size === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

/** The store holds a stamp or a block file: some catalog has used it. */
export function storeInUse(dataDir: string): boolean {
  if (readStamp(dataDir) !== null) return true;
  const dir = join(dataDir, BLOCKS_DIR);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return false;
  }
  for (const f of names) {
    if (f === TMP_DIR || !FANOUT.test(f)) continue;
    try {
      if (readdirSync(join(dir, f)).length > 0) return true;
    } catch {
      // a fan-out entry that cannot be listed holds, for all that is known, blocks
      return true;
    }
  }
  return false;
}

/**
 * CatalogMissing, before a catalog is created beside a store that some catalog has used: gc with
 * a new empty catalog would delete every block in it, and those blocks are only of use with the
 * catalog that went with them (their maps are in it, nowhere else). `newCatalog`: the operator
 * said to start afresh; the daemon does, with deletions held.
 */
export function refuseMissingCatalog(dataDir: string, newCatalog: boolean, log: EngineLogger): boolean {
  if (!catalogAbsent(dataDir) || !storeInUse(dataDir)) return false;
  const path = join(dataDir, CATALOG_FILE);
  if (newCatalog) {
    log.warn({ path }, 'no catalog beside a block store that holds blocks: a new, empty catalog is created (--new-catalog)');
    return true;
  }
  throw new BlocksnapError('CatalogMissing',
    `the catalog ${path} is missing (or empty), but the block store ${join(dataDir, BLOCKS_DIR)} holds blocks of a catalog: ` +
    'a new catalog would know none of its snapshots, and store gc would delete every block. Put back the catalog ' +
    '(its backup: blocksnap store backup-catalog), or, to start a new, empty catalog beside these blocks (they stay, and ' +
    `nothing is deleted until ${ACCEPT}), start the daemon once with --new-catalog`,
  { path });
}

/** What the probe reads of the catalog, and how long it may take (a catalog of millions of entries takes seconds). */
const PROBE_TIMEOUT_MS = 30 * 60_000;
const PROBE = `
const { open } = require(process.argv[1]);
const root = open({ path: process.argv[2], readOnly: true, compression: false, maxDbs: 64, keyEncoding: 'binary', encoding: 'binary' });
const names = [...root.getKeys()].map((k) => Buffer.from(k).toString().replace(/\\0+$/, ''));
let entries = 0;
for (const name of names) {
  const db = root.openDB({ name, keyEncoding: 'binary', encoding: 'binary' });
  for (const e of db.getRange()) entries += e.value.length >= 0 ? 1 : 0;
}
process.stdout.write(String(entries));
`;

/**
 * CatalogDamaged when reading the whole catalog fails. LMDB keeps no checksums and trusts its
 * pages: a truncated catalog.mdb or a flipped page number ends the process that reads it with
 * SIGSEGV or SIGBUS, which a `Restart=always` unit would turn into a silent crash loop. So a child
 * process reads every page of every database first, and the daemon opens the catalog only once it
 * came through. What the child could not do for another reason (no memory, a timeout) is left to
 * the daemon's own open, which then fails with its own error.
 */
export function probeCatalog(dataDir: string, log: EngineLogger): void {
  const path = join(dataDir, CATALOG_FILE);
  const r = spawnSync(process.execPath, ['-e', PROBE, require.resolve('lmdb'), path],
    { encoding: 'utf8', timeout: PROBE_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status === 0) return;
  const stderr = (r.stderr ?? '').trim();
  const crashed = r.signal === 'SIGSEGV' || r.signal === 'SIGBUS' || r.signal === 'SIGABRT' || r.signal === 'SIGILL';
  const lmdbSays = /MDB_(CORRUPTED|INVALID|PAGE_NOTFOUND|VERSION_MISMATCH|BAD_TXN|BAD_VALSIZE|BAD_DBI)|corrupt|-3091[0-9]/i.exec(stderr);
  if (!crashed && lmdbSays === null) {
    log.warn({ path, signal: r.signal, status: r.status, err: r.error?.message, stderr: stderr.slice(-500) }, 'could not read the catalog through in a child process; opening it all the same');
    return;
  }
  const how = crashed ? `reading it ends the reader with ${r.signal}` : `LMDB reports ${lmdbSays![0]}`;
  throw new BlocksnapError('CatalogDamaged',
    `the catalog ${path} is damaged (${how}: a truncated or overwritten file). The daemon does not start on it, and does not ` +
    'make a new one: the block store holds blocks only it knows. Stop whatever wrote it, keep the damaged file aside, put back ' +
    `the catalog's newest backup (blocksnap store backup-catalog) as ${path}, start the daemon, and run ${ACCEPT} if it says ` +
    'the catalog is older than the store',
  { path, ...(r.signal !== null ? { signal: r.signal } : {}) });
}

/**
 * Compares the catalog with the store's stamp, once both are open; returns the hold, or null when
 * the catalog is the store's (and then stamps each new generation). `created`: the catalog was
 * made by this start; `hadBlocks`: the store held a stamp or blocks before it.
 */
export function pairCatalog(catalog: Catalog, dataDir: string, hadBlocks: boolean, log: EngineLogger): CatalogHold | null {
  const storeDir = join(dataDir, BLOCKS_DIR);
  const stamp = readStamp(dataDir);
  let id = catalog.identity();
  const older = id.storeId === undefined && stamp === null;
  if (older) {
    // A data dir of a version from before stamps: the catalog and its store get one now.
    catalog.txn(() => catalog.setIdentity(newStoreId(), 0));
    id = catalog.identity();
  }
  const hold = older ? null : holdFor(catalog, storeDir, stamp, hadBlocks);
  if (hold !== null) {
    catalog.stampWith(null);
    log.error({ reason: hold.reason, catalog: catalog.path, store: storeDir, catalogGeneration: id.generation, stampGeneration: stamp?.generation ?? null }, hold.message);
    return hold;
  }
  const current = { storeId: id.storeId!, generation: id.generation };
  if (stamp === null || stamp.generation !== current.generation) {
    if (stamp !== null) log.info({ generation: current.generation, stamped: stamp.generation }, 'the block store\'s stamp was one change behind the catalog (a stop between the two); it is brought up to date');
    try {
      writeStamp(dataDir, current);
    } catch (err) {
      // A full data dir must still start, to delete snapshots and free space. A stamp left behind
      // the catalog holds nothing back: the next start takes the catalog ahead of it as current.
      log.warn({ err: (err as Error).message, generation: current.generation }, 'could not write the block store\'s stamp; the next change writes it');
    }
  }
  catalog.stampWith((s) => writeStamp(dataDir, s));
  return null;
}

function holdFor(catalog: Catalog, storeDir: string, stamp: StoreStamp | null, hadBlocks: boolean): CatalogHold | null {
  const id = catalog.identity();
  const held = 'Deleting blocks is held (store gc is refused, freed blocks are not unlinked) so that no block another catalog needs is lost';
  const accept = `or, to keep this catalog, run ${ACCEPT}: store gc then deletes every block it does not reference, and store verify lists the blocks its snapshots lack`;
  if (stamp === null) {
    // The catalog's first start, or a crash before the stamp was first written: an empty store has nothing to lose.
    if (!hadBlocks) return null;
    return {
      reason: 'unstamped',
      message: `the block store ${storeDir} holds blocks but the data dir has no stamp of their catalog (the data dir was copied without it, or its blocks/ came from another one). ${held}. ` +
        `Put back the data dir's catalog-stamp file, ${accept}`,
    };
  }
  if (id.storeId === undefined || id.storeId !== stamp.storeId) {
    const fresh = id.generation === 0 && catalog.allSnapshots().length === 0;
    if (fresh) {
      return {
        reason: 'new',
        message: `the catalog ${catalog.path} is new beside the block store ${storeDir}, which holds the blocks of another catalog (id ${stamp.storeId}). ${held}. ` +
          `Put back that catalog (its backup), ${accept}`,
      };
    }
    return {
      reason: 'foreign',
      message: `the catalog ${catalog.path} is not the block store's: the store ${storeDir} belongs to the catalog with id ${stamp.storeId}, and this one's is ${id.storeId ?? 'none (written by an older blocksnap)'} ` +
        `(two data dirs mixed up?). ${held}. Put back the catalog that goes with this store, ${accept}`,
    };
  }
  if (id.generation < stamp.generation) {
    return {
      reason: 'older',
      message: `the catalog ${catalog.path} is older than the block store ${storeDir}: it is at generation ${id.generation}, and the store was last changed at ${stamp.generation} ` +
        '(a catalog restored from a backup, or a data dir rolled back in part): blocks committed since are not in it, and blocks it references may have been deleted since. ' +
        `${held}. Put back the newest catalog, ${accept}`,
    };
  }
  return null;
}

/**
 * The operator's word that the catalog is the store's: both get a generation past either's, and
 * the catalog stamps each new one again. Blocks the catalog does not reference are then gc's.
 */
export function acceptCatalog(catalog: Catalog, dataDir: string): StoreStamp {
  const stamp = readStamp(dataDir);
  const id = catalog.identity();
  const storeId = id.storeId ?? newStoreId();
  const stampGeneration = stamp !== null && stamp.generation < Number.MAX_SAFE_INTEGER ? stamp.generation : 0;
  const accepted = { storeId, generation: Math.max(id.generation, stampGeneration) + 1 };
  catalog.txn(() => catalog.setIdentity(accepted.storeId, accepted.generation));
  writeStamp(dataDir, accepted);
  catalog.stampWith((s) => writeStamp(dataDir, s));
  return accepted;
}
