import { BlocksnapError } from '../errors';

export const NAME_MAX = 128;
const NAME_RE = /^[A-Za-z0-9._-]+$/;

/**
 * Names: 1-max chars of [A-Za-z0-9._-], not starting with '-' (it would read as an option). The
 * max is NAME_MAX unless the kind keeps a shorter limit, so the message states the real one.
 */
export function validateName(kind: 'disk' | 'snapshot' | 'policy' | 'group', name: unknown, max: number = NAME_MAX): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > max || !NAME_RE.test(name) || name.startsWith('-')) {
    throw new BlocksnapError('InvalidName',
      `invalid ${kind} name ${JSON.stringify(name)}: use 1-${max} characters of A-Z a-z 0-9 . _ - (not starting with -)`);
  }
  if (/^[dsjpg]-[0-9a-f]{16}$/.test(name)) {
    throw new BlocksnapError('InvalidName', `invalid ${kind} name ${JSON.stringify(name)}: it has the form of an id`);
  }
  return name;
}

/** Manual snapshot names must not start with "auto": that prefix belongs to policy snapshots. */
export function validateManualSnapshotName(name: unknown): string {
  const n = validateName('snapshot', name);
  if (n.toLowerCase().startsWith('auto')) {
    throw new BlocksnapError('InvalidName', `invalid snapshot name ${JSON.stringify(n)}: names starting with "auto" are reserved for automatic snapshots`);
  }
  return n;
}

/** A unique default name: base, then base-2, base-3, ... */
export function uniqueName(base: string, taken: (n: string) => boolean): string {
  if (!taken(base)) return base;
  for (let i = 2; ; i++) {
    const n = `${base}-${i}`;
    if (!taken(n)) return n;
  }
}

/** Default disk name from a file name: unsafe characters become '_'. */
export function nameFromPath(file: string): string {
  let n = file.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[-.]+/, '');
  if (/^[dsjpg]-[0-9a-f]{16}$/.test(n)) n = `disk-${n}`;
  return (n || 'disk').slice(0, NAME_MAX - 8);
}

/** Default manual snapshot name: snap-YYYYMMDD-HHMMSS (UTC). */
export function defaultSnapshotName(now: Date): string {
  const iso = now.toISOString();
  return `snap-${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}`;
}
