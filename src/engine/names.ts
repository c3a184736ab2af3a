import { BlocksnapError } from '../errors';
import type { SnapshotRecord } from '../catalog/records';

export const NAME_MAX = 128;
/** Leaves room for "auto-" and "-YYYYMMDDTHHMMSSZ" within a snapshot name. */
export const POLICY_NAME_MAX = 100;
const NAME_RE = /^[A-Za-z0-9._-]+$/;
const EXPORT_NAME_RE = /^[A-Za-z0-9._@-]+$/;

/**
 * Every name a user gives is checked here, by the engine whoever sent it (the daemon passes any
 * string on, the CLI checks the same way before it connects), so that an empty, long or
 * malformed name is InvalidName on every path.
 *
 * Names: 1-max chars of [A-Za-z0-9._-], not starting with '-' (it would read as an option). The
 * max is NAME_MAX unless the kind keeps a shorter limit, so the message states the real one.
 */
export function validateName(kind: 'disk' | 'snapshot' | 'policy' | 'group', name: unknown, max: number = NAME_MAX): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > max || !NAME_RE.test(name) || name.startsWith('-')) {
    throw new BlocksnapError('InvalidName',
      `invalid ${kind} name ${quotedName(name, max)}: use 1-${max} characters of A-Z a-z 0-9 . _ - (not starting with -)`);
  }
  if (/^[dsjpg]-[0-9a-f]{16}$/.test(name)) {
    throw new BlocksnapError('InvalidName', `invalid ${kind} name ${JSON.stringify(name)}: it has the form of an id`);
  }
  return name;
}

/** Export names: 1-128 characters of [A-Za-z0-9._@-], not starting with '-'. */
export function validateExportName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > NAME_MAX || !EXPORT_NAME_RE.test(name) || name.startsWith('-')) {
    throw new BlocksnapError('InvalidName',
      `invalid export name ${quotedName(name, NAME_MAX)}: use 1-${NAME_MAX} characters of A-Z a-z 0-9 . _ @ - (not starting with -)`);
  }
  return name;
}

/** A refused name as its message shows it: one far over the limit is cut, with its length (a request may carry a megabyte). */
export function quotedName(name: unknown, max: number): string {
  if (typeof name !== 'string' || name.length <= max) return JSON.stringify(name) ?? String(name);
  return `${JSON.stringify(`${name.slice(0, 32)}…`)} (${name.length} characters)`;
}

/**
 * Manual snapshot names must not start with "auto": that prefix belongs to policy snapshots. A
 * group's name is also the name of each of its member snapshots, so it is checked the same way,
 * as `kind` 'group': the message then names a group name, the one the user gave.
 */
export function validateManualSnapshotName(name: unknown, kind: 'snapshot' | 'group' = 'snapshot'): string {
  const n = validateName(kind, name);
  if (n.toLowerCase().startsWith('auto')) {
    const also = kind === 'group' ? ' (a group\'s name is also the name of its member snapshots)' : '';
    throw new BlocksnapError('InvalidName', `invalid ${kind} name ${JSON.stringify(n)}: names starting with "auto" are reserved for automatic snapshots${also}`);
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

/**
 * A snapshot name taken by another snapshot of the disk. One that failed (`error`, a NoSpace
 * say) keeps its name for its record of why: the message says so and how to free the name, as a
 * retry after the cause is fixed runs into it.
 */
export function snapshotNameTaken(diskName: string, holder: SnapshotRecord): BlocksnapError {
  const failed = holder.status === 'error'
    ? `; it is the failed snapshot ${holder.id}${holder.error ? ` (${holder.error.code})` : ''}, kept to say why: delete it (blocksnap snapshot delete ${holder.id}) to use the name again`
    : '';
  return new BlocksnapError('NameTaken', `disk ${diskName} already has a snapshot named ${JSON.stringify(holder.name)}${failed}`, { snapshotId: holder.id, status: holder.status });
}
