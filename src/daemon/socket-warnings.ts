/**
 * Warnings at start about who the sockets' mode lets in. Neither is refused: a mode open to every
 * user is a choice an operator may make on a single-user host, and a directory that shuts the
 * socket's group out may be meant to (a group member who also owns it). Both are easy to get by
 * mistake, and the clients' EACCES cannot tell them from a wrong group.
 */
import { statSync } from 'node:fs';
import { dirname } from 'node:path';

/** A mode that lets others write the socket lets every local user connect and use the daemon. */
export function openSocketModeWarning(socketMode: number, nbd: boolean): string | null {
  if ((socketMode & 0o002) === 0) return null;
  const mode = socketMode.toString(8).padStart(4, '0');
  return `--socket-mode ${mode} lets every local user connect to the daemon${nbd ? ' and to its NBD socket' : ''}: ` +
    'any of them may use it, and through it read and roll back every image in the roots with the daemon\'s rights; ' +
    'to admit some users only, give them a --socket-group and leave the mode at 0660';
}

interface Denying {
  dir: string;
  mode: number;
}

/**
 * The directories above `socketPath` that deny search, which connecting needs, to those the mode
 * admits besides the daemon's user: the members of `gid`, or with no group, every user when others
 * may write the socket. A member searches with a directory's group bits when its group is `gid`,
 * else with its others bits: what other groups a member is in is not known here.
 */
function denyingDirs(socketPath: string, socketMode: number, gid: number | undefined): Denying[] {
  const byGroup = gid !== undefined && (socketMode & 0o020) !== 0;
  if (!byGroup && (socketMode & 0o002) === 0) return [];
  const found: Denying[] = [];
  for (let dir = dirname(socketPath); ; dir = dirname(dir)) {
    const st = statSync(dir);
    const bit = byGroup && st.gid === gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) found.push({ dir, mode: st.mode & 0o7777 });
    if (dir === dirname(dir)) return found.reverse();
  }
}

/** Names every directory that keeps the socket's group (or, with no group, other users) from it. */
export function unreachableSocketWarning(socketPath: string, socketMode: number, group: { name: string; gid: number } | undefined): string | null {
  const denying = denyingDirs(socketPath, socketMode, group?.gid);
  if (denying.length === 0) return null;
  const who = group !== undefined && (socketMode & 0o020) !== 0 ? `members of group ${group.name}` : 'other users';
  const dirs = denying.map((d) => `${d.dir} (mode ${d.mode.toString(8).padStart(4, '0')})`).join(', ');
  return `${who} cannot reach the socket ${socketPath}: ${denying.length === 1 ? 'the directory' : 'the directories'} ${dirs} ` +
    `above it ${denying.length === 1 ? 'does' : 'do'} not let them search ${denying.length === 1 ? 'it' : 'them'}; ` +
    'give them search permission there (chmod o+x, or g+x for a directory of their group) or choose a socket path elsewhere';
}
