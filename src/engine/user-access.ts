/**
 * What a client who is neither root nor the daemon's user may do with the paths it names: what
 * the kernel would let that user do, no more. The daemon opens images, creates clones and
 * writes rollbacks with its own rights (root's, usually); a socket-group member who could name
 * any file inside the image roots would otherwise read a root-only file through a snapshot, or
 * overwrite one (a setuid binary) by relocating a disk onto it and rolling it back.
 *
 * Decided as the kernel decides for a process of that uid, primary gid and supplementary groups
 * (generic_permission): search on every directory of the real path from `/` down, then the
 * owner's, the group's or the others' bits of the file, and the file's or a directory's POSIX
 * access ACL where it has one and its mask (the mode's group bits) is not empty
 * (posix_acl_permission: the named user and group entries, limited by the mask). Not decided: capabilities the user holds (CAP_DAC_OVERRIDE of a non-root
 * process), LSM policy (SELinux, AppArmor), a read-only mount, NFSv4 ACLs and chattr flags, all of
 * which only ever refuse more: the daemon's own open still meets the ones that apply to it.
 *
 * The rights are decided on the files themselves, not on their names: the real path is walked one
 * component at a time, each directory and then the file opened (O_PATH, never through a symlink)
 * from the one before, and search, read and write decided on what each descriptor is (fstat, and
 * the ACL through /proc/self/fd). The file's descriptor is then held until the job that uses it
 * ends (release()), and every open a job makes for this user compares what it opened with it
 * (FileIdentity, in the native layer): whoever may write a directory on the path can rename
 * another file over it, or another directory over one on the way, after the decision, and the
 * daemon would otherwise read or write, with its own rights, a file the user may not.
 */
import { closeSync, constants, fstatSync, openSync, statSync, type Stats } from 'node:fs';
import { dirname, sep } from 'node:path';
import { BlocksnapError, toBlocksnapError } from '../errors';
import { accessAcl, type FileIdentity, type FileOwner } from '../native';
import { realPrefix } from './paths';

/**
 * open(2)'s O_PATH (Linux, every architecture Node runs on): a descriptor that only names the
 * file, opened without read or write rights to it and without side effects (a FIFO, a device);
 * fstat and /proc/self/fd work on it. node:fs does not export the constant.
 */
const O_PATH = 0o10000000;

/** A client's user as the kernel reported it (SO_PEERCRED) and its groups (/proc/PID/status). */
export interface UserCredentials {
  uid: number;
  gid: number;
  groups: readonly number[];
}

export type Right = 'read' | 'write' | 'search';

const BIT: Readonly<Record<Right, number>> = { read: 4, write: 2, search: 1 };

/** The rights of one user on the files a call names; the engine asks it before it opens or creates them. */
export class UserAccess {
  /** The files and directories decided, by real path, each held open until release(). */
  private readonly decided = new Map<string, { fd: number; id: FileIdentity }>();

  constructor(private readonly who: UserCredentials) {}

  /**
   * The file or directory at the real path `real` as its rights were last decided here, held open
   * since: what a job's open must be (FileIdentity); undefined if none was decided.
   */
  identity(real: string): FileIdentity | undefined {
    return this.decided.get(real)?.id;
  }

  /** Closes what was held for the jobs of this call; the identities given out must no longer be used. */
  release(): void {
    for (const { fd } of this.decided.values()) closeSync(fd);
    this.decided.clear();
  }

  /** The user's uid, gid and groups, as a disk it registers records them (DiskRecord.registeredBy). */
  get credentials(): UserCredentials {
    return { uid: this.who.uid, gid: this.who.gid, groups: [...this.who.groups] };
  }

  /** Who the files made for this user are given to. */
  get owner(): FileOwner {
    return { uid: this.who.uid, gid: this.who.gid };
  }

  /**
   * Refuses (NotAuthorized) unless the user may reach the existing file at `real` and has `rights`
   * on it; `given` names it. The file decided on is held (identity(real)) until release().
   */
  checkFile(real: string, given: string, rights: readonly Right[]): FileIdentity {
    const held = this.walk(real, given, false);
    try {
      for (const right of rights) this.require(real, held, right, given, `${right} ${given}`);
    } catch (err) {
      closeSync(held.fd);
      throw err;
    }
    return this.hold(real, held);
  }

  /**
   * Refuses unless the user could create a file in the existing directory `realDir`: search to it,
   * write and search on it. The directory decided on is held (identity(realDir)) until release().
   */
  checkCreateIn(realDir: string, given: string): FileIdentity {
    const held = this.walk(realDir, given, true);
    try {
      this.require(realDir, held, 'search', given, `create ${given} (search directory ${realDir})`);
      this.require(realDir, held, 'write', given, `create ${given} (write directory ${realDir})`);
    } catch (err) {
      closeSync(held.fd);
      throw err;
    }
    return this.hold(realDir, held);
  }

  private hold(real: string, held: Held): FileIdentity {
    const st = fstatSync(held.fd, { bigint: true });
    const was = this.decided.get(real);
    if (was !== undefined) closeSync(was.fd);
    const id = { dev: st.dev, ino: st.ino };
    this.decided.set(real, { fd: held.fd, id });
    return id;
  }

  /**
   * The real path `real` opened one component at a time from `/`, search on each directory
   * decided on the descriptor it was opened as before the next is opened from it, as the kernel
   * walks a path for a process of this user: a directory renamed or swapped for a symlink on the
   * way is met as it is then, never by a name looked up again. Returns the last component, open
   * (O_PATH), and its stat; the caller decides on it and closes it.
   */
  private walk(real: string, given: string, directory: boolean): Held {
    const names = real.split(sep).filter((c) => c !== '');
    let at: Held = opened(sep, openSync(sep, O_PATH | constants.O_DIRECTORY), true);
    let path: string = sep;
    try {
      for (let i = 0; i < names.length; i++) {
        this.require(path, at, 'search', given, `search directory ${path}`);
        const last = i === names.length - 1;
        const next = path === sep ? `${sep}${names[i]!}` : `${path}${sep}${names[i]!}`;
        const wantDir = !last || directory;
        let fd: number;
        try {
          fd = openSync(`/proc/self/fd/${at.fd}/${names[i]!}`, O_PATH | constants.O_NOFOLLOW | (wantDir ? constants.O_DIRECTORY : 0));
        } catch (err) {
          throw walkError(next, given, err);
        }
        closeSync(at.fd);
        at = opened(next, fd, wantDir);
        path = next;
      }
      if (!directory && !at.st.isFile()) {
        throw new BlocksnapError('NotAnImage', `${given} is no longer a regular file (it was replaced after it was checked); refusing it`, { path: given });
      }
      return at;
    } catch (err) {
      closeSync(at.fd);
      throw err;
    }
  }

  /**
   * For a path that did not resolve to what the call needs (missing, already there, not a
   * regular file): refuses as checkFile would had it been there, when the user could not have
   * searched the directories on the way, so that the answer tells this user nothing of a
   * directory it may not look into.
   */
  checkReachOf(given: string): void {
    const reached = realPrefix(given);
    this.checkReach(reached.real, given);
    if (reached.errno === null) return;
    let st: Stats;
    try {
      st = statSync(reached.real);
    } catch {
      return;
    }
    if (st.isDirectory()) this.require(reached.real, { st, acl: () => accessAcl(reached.real) }, 'search', given, `search directory ${reached.real}`);
  }

  /** Search on every directory above `real`, from `/` down. */
  private checkReach(real: string, given: string): void {
    const dirs: string[] = [];
    for (let d = dirname(real); ; d = dirname(d)) {
      dirs.unshift(d);
      if (d === sep) break;
    }
    for (const d of dirs) this.require(d, { st: statSync(d), acl: () => accessAcl(d) }, 'search', given, `search directory ${d}`);
  }

  private require(path: string, on: Decided, right: Right, given: string, what: string): void {
    if (this.allows(path, on, BIT[right])) return;
    const st = on.st;
    const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
    throw new BlocksnapError('NotAuthorized',
      `uid ${this.who.uid} may not ${what}: ${path} is mode ${mode}, owner ${st.uid}, group ${st.gid}${on.acl() === null ? '' : ', with an ACL'}; ` +
      'the daemon acts on a path a client names only as far as the client\'s own user could',
      { path: given, uid: this.who.uid, right, deniedOn: path });
  }

  private inGroup(gid: number): boolean {
    return gid === this.who.gid || this.who.groups.includes(gid);
  }

  /**
   * Whether the user holds every right in `want` (a mask of 4, 2, 1) on `path`, whose stat and
   * ACL `on` gives. As acl_permission_check (fs/namei.c): the owner gets the owner's bits, ACL or
   * not; the ACL is consulted only when the mode's group bits, which hold its mask, are not all 0,
   * and otherwise the mode bits decide.
   */
  private allows(path: string, on: Decided, want: number): boolean {
    const st = on.st;
    if (st.uid === this.who.uid) return ((st.mode >> 6) & want) === want;
    const acl = (st.mode & 0o070) === 0 ? null : on.acl();
    if (acl !== null) return aclAllows(parseAcl(acl, path), st, this.who.uid, (g) => this.inGroup(g), want);
    let bits: number;
    if (this.inGroup(st.gid)) bits = st.mode >> 3;
    else bits = st.mode;
    return (bits & want) === want;
  }
}

/** What rights are decided on: a file's or directory's stat, and its access ACL read when needed. */
interface Decided {
  st: Stats;
  acl(): Buffer | null;
}

/** A file or directory open (O_PATH) as a walk met it, decided on through its descriptor. */
interface Held extends Decided {
  fd: number;
}

function opened(path: string, fd: number, directory: boolean): Held {
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (directory && !st.isDirectory()) {
    closeSync(fd);
    throw new BlocksnapError('NotAnImage', `${path} is no longer a directory (it was replaced after it was checked); refusing it`, { path });
  }
  let acl: Buffer | null | undefined;
  // Through /proc/self/fd the ACL read is the descriptor's file's, whatever its name leads to now.
  return { fd, st, acl: () => (acl === undefined ? (acl = accessAcl(`/proc/self/fd/${fd}`)) : acl) };
}

/** Why a walk could not open `path` (a component of the client's `given`), which it had resolved just before. */
function walkError(path: string, given: string, err: unknown): BlocksnapError {
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === 'ENOENT') return new BlocksnapError('ImageNotFound', `${given} was removed or moved after it was checked (${path} is gone)`, { path: given });
  if (errno === 'ELOOP' || errno === 'ENOTDIR') {
    return new BlocksnapError('NotAnImage', `${given} changed after it was checked: ${path} is no longer a directory (a symlink or file was swapped into the path); refusing it`, { path: given });
  }
  return toBlocksnapError(err);
}

interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

// include/uapi/linux/posix_acl.h and posix_acl_xattr.h
const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_GROUP = 0x08;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;
const ACL_XATTR_VERSION = 2;

/** The entries of a system.posix_acl_access value: a version word, then (tag u16, perm u16, id u32) each, little-endian. */
export function parseAcl(value: Buffer, path: string): AclEntry[] {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== ACL_XATTR_VERSION) {
    throw new BlocksnapError('UnsupportedFormat', `${path} has a POSIX ACL in a form this build does not read (${value.length} bytes)`, { path });
  }
  const entries: AclEntry[] = [];
  for (let at = 4; at < value.length; at += 8) {
    entries.push({ tag: value.readUInt16LE(at), perm: value.readUInt16LE(at + 2), id: value.readUInt32LE(at + 4) });
  }
  return entries;
}

/**
 * posix_acl_permission (fs/posix_acl.c), over the entries in the order the kernel keeps them:
 * the owner's entry alone decides for the owner; a named user's entry, limited by the mask,
 * decides for that user; otherwise the owning group's and the named groups' entries the user
 * is in grant if one of them holds every wanted right (limited by the mask), refuse if none
 * does; only a user in none of them gets the others' entry.
 */
export function aclAllows(entries: readonly AclEntry[], st: Pick<Stats, 'uid' | 'gid'>, uid: number, inGroup: (gid: number) => boolean, want: number): boolean {
  const masked = (i: number): boolean => {
    const mask = entries.slice(i + 1).find((e) => e.tag === ACL_MASK);
    const perm = entries[i]!.perm & (mask === undefined ? 7 : mask.perm);
    return (perm & want) === want;
  };
  let found = false;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    switch (e.tag) {
      case ACL_USER_OBJ:
        if (st.uid === uid) return (e.perm & want) === want;
        break;
      case ACL_USER:
        if (e.id === uid) return masked(i);
        break;
      case ACL_GROUP_OBJ:
      case ACL_GROUP:
        if (inGroup(e.tag === ACL_GROUP_OBJ ? st.gid : e.id)) {
          found = true;
          if ((e.perm & want) === want) return masked(i);
        }
        break;
      case ACL_MASK:
        break;
      case ACL_OTHER:
        return !found && (e.perm & want) === want;
      default:
        return false;
    }
  }
  return false;
}

/**
 * `resolve()` of the path `given` for `user` (none: root or the daemon's user, unchecked). A
 * refusal that tells what is there (missing, already there, not a regular file) is given only
 * when the user could have searched the directories on the way; otherwise it is NotAuthorized
 * as for an existing file.
 */
export function resolvedFor<T>(user: UserAccess | undefined, given: string, resolve: () => T): T {
  try {
    return resolve();
  } catch (err) {
    if (user !== undefined && err instanceof BlocksnapError && TELLING.has(err.code)) user.checkReachOf(given);
    throw err;
  }
}

const TELLING = new Set(['ImageNotFound', 'FileExists', 'NotAnImage', 'PermissionDenied']);

/** The real path of a new file `given` resolved to (resolveNewFile), checked for `user`: it may create it. */
export function newFileFor(user: UserAccess | undefined, given: string, resolve: () => string): string {
  const target = resolvedFor(user, given, resolve);
  user?.checkCreateIn(dirname(target), given);
  return target;
}
