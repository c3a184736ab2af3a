/**
 * Calls that lend the daemon's own rights to something the client names. The socket's mode and
 * group decide who may use the daemon at all; these few calls are kept for root and the daemon's
 * own user, who hold those rights anyway, so whoever else is let in on the socket gains none.
 */
import { BlocksnapError } from '../errors';
import type { CallContext } from './methods';

/** Throws NotAuthorized unless the client (by SO_PEERCRED) is root or the daemon's user. */
export function requireDaemonUser(ctx: CallContext, what: string, why: string): void {
  const daemonUid = process.getuid?.() ?? 0;
  const uid = ctx.peerUid;
  if (uid === 0 || uid === daemonUid) return;
  const who = uid === undefined ? 'a client whose user the kernel did not report' : `uid ${uid}`;
  throw new BlocksnapError('NotAuthorized',
    `only root or the daemon's user (uid ${daemonUid}) may ${what}, not ${who}: ${why}`, { uid: uid ?? null, daemonUid });
}
