/**
 * What is running: the package version, read once from package.json (two levels up from both
 * src/daemon and dist/daemon), and a build id that tells builds of one version apart.
 *
 * The version alone does not: every build of a version says the same, so after an upgrade an
 * operator could not tell whether the daemon still runs the old code (it keeps running until
 * restarted) or whether the CLI and the daemon come from the same install. The build id is taken
 * from the code itself, so it needs no build step and no git: the first 12 hex digits of a
 * SHA-256 over the path and content of every module of this tree (dist/**.js, or src/**.ts when
 * run from source) and of the native addon. Two installs of the same code have the same id;
 * any change of either gives another.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ADDON_PATH } from '../native';

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0-unknown';
  } catch {
    return '0.0.0-unknown';
  }
}

export const PACKAGE_VERSION = readVersion();

/** The files of the code tree under `dir` (its own language's modules), sorted, as paths relative to `root`. */
function codeFiles(dir: string, root: string, ext: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...codeFiles(path, root, ext));
    else if (e.isFile() && e.name.endsWith(ext) && !e.name.endsWith('.d.ts')) out.push(relative(root, path));
  }
  return out.sort();
}

/** The build id of the code tree at `treeRoot` (dist/ or src/) with the addon at `addonPath`; 'unknown' if it cannot be read. */
export function buildIdOf(treeRoot: string, addonPath: string): string {
  try {
    const ext = __filename.endsWith('.ts') ? '.ts' : '.js';
    const hash = createHash('sha256');
    const add = (name: string, content: Buffer): void => {
      // Length-prefixed, so that no two different trees hash the same stream of bytes.
      hash.update(`${name}\0${content.length}\0`);
      hash.update(content);
    };
    for (const file of codeFiles(treeRoot, treeRoot, ext)) add(file, readFileSync(join(treeRoot, file)));
    add('addon', readFileSync(addonPath));
    return hash.digest('hex').slice(0, 12);
  } catch {
    return 'unknown';
  }
}

let cached: string | undefined;

/** The id of the running build, computed on first use (about 3 MB read and hashed: a few ms). */
export function buildId(): string {
  cached ??= buildIdOf(join(__dirname, '..'), ADDON_PATH);
  return cached;
}
