/**
 * The daemon refuses to start on a data dir or socket directory that another user controls. A
 * user who owns or may write the data dir (or a directory one of its symbolic links leads to)
 * can rename the store's directories, plant symbolic links the daemon then writes through with
 * its own rights, and corrupt snapshots; one who may write the socket's directory can remove the
 * socket and bind their own where clients look for the daemon's. Refused rather than warned
 * about: a warning in a log nobody reads leaves the daemon serving through that user's tree, and
 * the fix (chown, chmod go-w, another path) is one command. Only the directory itself is checked,
 * not its parents (OpenSSH checks those too): a home directory that is group-writable by design
 * (user private groups with umask 002) would otherwise stop every user's daemon.
 */
import { readdirSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { BlocksnapError } from '../errors';
import { daemonUser, describeUser } from './user-names';

const S_ISVTX = 0o1000;

/** `subject` names the path for the message; `stickyOk`: a sticky directory shares only its names. */
function checkTrusted(path: string, subject: string, stickyOk: boolean, instead: string): void {
  const st: Stats = statSync(path);
  if (st.uid !== 0 && st.uid !== process.geteuid!()) {
    throw new BlocksnapError('UntrustedPath',
      `${subject} is owned by ${describeUser(st.uid)}, not by ${process.geteuid!() === 0 ? 'root' : `${daemonUser()} or root`}: that user could replace what the daemon keeps there. ${instead}`,
      { path, owner: st.uid });
  }
  if ((st.mode & 0o022) !== 0 && !(stickyOk && (st.mode & S_ISVTX) !== 0)) {
    const who = (st.mode & 0o002) !== 0 ? 'every user' : `every member of its group (gid ${st.gid})`;
    throw new BlocksnapError('UntrustedPath',
      `${subject} may be written by ${who} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}), who could replace what the daemon keeps there. ${instead}`,
      { path, mode: st.mode & 0o7777 });
  }
}

/** The data dir (which exists) and every file or directory its top-level symbolic links lead to. */
export function checkDataDirTrusted(dataDir: string): void {
  const instead = 'Make it the daemon\'s (chown it to the daemon\'s user or root, chmod go-w), or pass another --data-dir';
  checkTrusted(dataDir, `the data directory ${dataDir}`, false, instead);
  for (const e of readdirSync(dataDir, { withFileTypes: true })) {
    if (!e.isSymbolicLink()) continue;
    const link = join(dataDir, e.name);
    let target: string;
    try {
      target = realpathSync(link);
    } catch {
      continue; // dangling: nothing to write through (the store creates what it needs by its own name)
    }
    checkTrusted(target, `${target}, where the data directory's symbolic link ${link} leads,`, false, instead);
  }
}

/** The directory a socket is created in (which exists); `option` names the socket's option. */
export function checkSocketDirTrusted(socketPath: string, option: '--socket' | '--nbd-socket'): void {
  const dir = dirname(socketPath);
  checkTrusted(dir, `the directory ${dir} of the socket ${socketPath}`, true,
    `Choose a path in a directory only the daemon's user or root may write, or a sticky one like /tmp, with ${option}`);
}
