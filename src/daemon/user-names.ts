/**
 * Users named for messages about files of another user: "user alice (uid 1001)" tells an operator
 * whom to ask, a bare number does not. Through NSS (getent), so LDAP/sssd users are named too.
 */
import { spawnSync } from 'node:child_process';

export function describeUser(uid: number): string {
  const r = spawnSync('getent', ['passwd', String(uid)], { encoding: 'utf8' });
  const name = r.status === 0 ? r.stdout.split(':')[0]?.trim() : undefined;
  return name !== undefined && name !== '' ? `user ${name} (uid ${uid})` : `uid ${uid}`;
}

/** The daemon's own user, as messages name it. */
export function daemonUser(): string {
  return `the daemon's user (uid ${process.geteuid!()})`;
}
