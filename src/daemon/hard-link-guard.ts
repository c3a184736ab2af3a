/**
 * Image roots are checked by real path, and a hard link has no other path than its own: a user
 * who can write inside a root and may hard-link a file from elsewhere on the same filesystem
 * could have the daemon, which usually runs as root, snapshot (read) or roll back (write) it.
 * Linux refuses such links to unprivileged users when `fs.protected_hardlinks` is 1 (only files
 * they own, or may read and write, can be linked: nothing they could not reach themselves), the
 * default of Debian, Ubuntu, RHEL and systemd. The daemon cannot tell a hard link made in
 * spite of that from any other file, so it says so at start-up when the protection is off.
 */
import { readFileSync } from 'node:fs';

export const PROTECTED_HARDLINKS = '/proc/sys/fs/protected_hardlinks';

/** Why image roots do not hold against hard links on this host, or null when they do (or it cannot be read). */
export function hardLinkWarning(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | null {
  let value: string;
  try {
    value = read(PROTECTED_HARDLINKS).trim();
  } catch {
    return null;
  }
  if (value !== '0') return null;
  return 'fs.protected_hardlinks is 0: a user who can write inside an image root can hard-link any file of the same filesystem into it, ' +
    'and the daemon would snapshot or roll back that file with its own rights; set it to 1 (sysctl -w fs.protected_hardlinks=1)';
}
