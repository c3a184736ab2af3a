/**
 * A client's user and groups, for deciding what it may do with the paths it names
 * (client-rights.ts). SO_PEERCRED gives the uid, gid and pid the client had when it connected;
 * its supplementary groups are read from /proc/PID/status at once, while it is still connected
 * and its pid cannot have been reused. The status must show the same effective uid and gid, or
 * the groups are not taken as the client's (a process that changed user since connecting, or
 * whose pid the kernel did not report).
 */
import { readFileSync } from 'node:fs';
import type { SocketPeer } from '../native';
import type { UserCredentials } from '../engine/user-access';

/** The credentials of `peer`, or undefined when its groups cannot be read as those of the user that connected. */
export function peerCredentials(peer: SocketPeer | undefined, procDir = '/proc'): UserCredentials | undefined {
  if (peer === undefined || !(peer.pid > 0)) return undefined;
  let status: string;
  try {
    status = readFileSync(`${procDir}/${peer.pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const ids = (name: string): number[] | undefined => {
    const line = new RegExp(`^${name}:([\\t 0-9]*)$`, 'm').exec(status);
    return line === null ? undefined : line[1]!.split(/\s+/).filter((t) => t !== '').map(Number);
  };
  // Uid: and Gid: list the real, effective, saved and filesystem ids; SO_PEERCRED holds the effective ones.
  const uids = ids('Uid');
  const gids = ids('Gid');
  const groups = ids('Groups');
  if (uids?.[1] !== peer.uid || gids?.[1] !== peer.gid || groups === undefined) return undefined;
  return { uid: peer.uid, gid: peer.gid, groups };
}
