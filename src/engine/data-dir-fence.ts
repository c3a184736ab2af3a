/**
 * The data directories open in this process. Whatever the roots say, nothing in one is a client's
 * to name: an image root that holds the data dir (the README's quick start runs the daemon with
 * both in one directory) would otherwise let a socket user register the catalog or a block file
 * as a disk and roll it back, or clone over the store.
 *
 * Fenced by real path, and by identity (device and inode): realpath does not cross a bind mount,
 * so the data dir, a directory above it or one of its store directories bind-mounted inside an
 * image root is another real path to the same directories, which a comparison of paths lets
 * through (the catalog registered there as a raw disk and rolled back lost snapshots). So every
 * directory on a checked real path, and the file itself, is also compared with the data dir's:
 * the data dir, its entries (catalog, lock files, `blocks`, `granules`, `cow`, and what a
 * symlinked one leads to) and the directories in those (fan-out, temp and layer directories).
 * The store makes those as it needs them, so a directory met on the device of a fenced one that is
 * not known is looked for again in the store's listings before it is let through.
 */
import { lstatSync, readdirSync, realpathSync, statSync, type BigIntStats } from 'node:fs';
import { join, sep } from 'node:path';

interface Fence {
  /** The data dir's real path, named in refusals. */
  dataDir: string;
  /** Real paths fenced by name: the data dir and what its symlinked entries lead to. */
  realPaths: string[];
  /** `dev:ino` of every fenced directory and file. */
  ids: Set<string>;
  /** Devices those are on: only a directory on one of them can be one of them. */
  devices: Set<bigint>;
  /** The directories whose entries are fenced too (blocks, granules, cow): each entry recorded, by name. */
  containers: Map<string, Map<string, string>>;
}

const fences = new Set<Fence>();

const idOf = (st: BigIntStats): string => `${st.dev}:${st.ino}`;

function record(f: Fence, path: string, follow: boolean): BigIntStats | null {
  let st: BigIntStats;
  try {
    st = follow ? statSync(path, { bigint: true }) : lstatSync(path, { bigint: true });
  } catch {
    return null; // gone, or a dangling link: nothing a client could reach through it
  }
  f.ids.add(idOf(st));
  f.devices.add(st.dev);
  return st;
}

/** Records the data dir's entries, and the subdirectories of its directories not recorded yet. */
function refresh(f: Fence): void {
  let entries: string[];
  try {
    entries = readdirSync(f.dataDir);
  } catch {
    return;
  }
  for (const name of entries) {
    const path = join(f.dataDir, name);
    record(f, path, false);
    const st = record(f, path, true);
    if (st?.isDirectory() && !f.containers.has(path)) f.containers.set(path, new Map());
  }
  for (const [dir, seen] of f.containers) {
    let names: Set<string>;
    try {
      names = new Set(readdirSync(dir));
    } catch {
      continue;
    }
    // A removed entry's inode number may come back as anyone's directory.
    for (const [name, id] of seen) {
      if (!names.has(name)) {
        seen.delete(name);
        f.ids.delete(id);
      }
    }
    for (const name of names) {
      if (seen.has(name)) continue;
      const st = record(f, join(dir, name), false);
      if (st !== null) seen.set(name, idOf(st));
    }
  }
}

/** Records the fenced directories and files afresh, forgetting those gone since. */
function rebuild(f: Fence): void {
  f.ids.clear();
  f.containers.clear();
  record(f, f.dataDir, true);
  refresh(f);
}

/** Keeps clients out of the data dir `dataDir` until the returned function is called. */
export function fenceDataDirOf(dataDir: string): () => void {
  const real = realpathSync(dataDir);
  const f: Fence = { dataDir: real, realPaths: [real], ids: new Set(), devices: new Set(), containers: new Map() };
  record(f, real, true);
  // A store moved to another disk (`blocks -> /srv/big/blocks`): the store follows the link.
  for (const e of readdirSync(real, { withFileTypes: true })) {
    if (!e.isSymbolicLink()) continue;
    try {
      f.realPaths.push(realpathSync(join(real, e.name)));
    } catch {
      // A dangling link leads nowhere a client could name.
    }
  }
  refresh(f);
  fences.add(f);
  return () => { fences.delete(f); };
}

function under(real: string, dir: string): boolean {
  return real === dir || real.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * The fenced data dir `real` (a real path) lies in, by name or by the identity of any directory
 * on it or of the file itself; undefined when none. A component that cannot be looked at now
 * (gone, or not searchable) ends the walk: what is below it cannot be reached either.
 */
export function fencingDataDir(real: string): string | undefined {
  if (fences.size === 0) return undefined;
  for (const f of fences) if (f.realPaths.some((d) => under(real, d))) return f.dataDir;
  const stats: BigIntStats[] = [];
  for (let at = 0; at !== -1; at = real.indexOf(sep, at + 1)) {
    try {
      stats.push(lstatSync(at === 0 ? sep : real.slice(0, at), { bigint: true }));
    } catch {
      return undefined;
    }
  }
  try {
    stats.push(lstatSync(real, { bigint: true }));
  } catch {
    // A file yet to be created: its directories were checked.
  }
  for (const f of fences) {
    const fenced = (): boolean => stats.some((st) => f.ids.has(idOf(st)));
    // Looked at again before a refusal: a data dir entry replaced since (the catalog's stamp is
    // renamed over at every change) freed an inode number that any new file may get.
    if (fenced()) {
      rebuild(f);
      if (fenced()) return f.dataDir;
    }
    // A directory the store made since it was last looked at.
    if (stats.some((st) => f.devices.has(st.dev) && st.isDirectory() && !f.ids.has(idOf(st)))) {
      refresh(f);
      if (fenced()) return f.dataDir;
    }
  }
  return undefined;
}
