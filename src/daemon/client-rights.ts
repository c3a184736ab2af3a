/**
 * What a client may do with the daemon's rights. The socket's mode and group decide who may use
 * the daemon at all; every socket user may then snapshot, export, clone and roll back every disk
 * registered, by anyone. What the daemon opens or creates by a path the client names is another
 * matter: a client that is neither root nor the daemon's own user gets there only what its own
 * user could do (user-access.ts): register or relocate onto an image it may read and write,
 * import a stream it may read, create a file where it may create one, which is then its own;
 * a disk it registers is opened afterwards only as far as it could (registrant-access.ts).
 * A few calls are kept for root and the daemon's own user altogether.
 */
import { BlocksnapError } from '../errors';
import { UserAccess } from '../engine/user-access';
import type { CallContext } from './methods';

function daemonUid(): number {
  return process.getuid?.() ?? 0;
}

/** Throws NotAuthorized unless the client (by SO_PEERCRED) is root or the daemon's user. */
export function requireDaemonUser(ctx: CallContext, what: string, why: string): void {
  const uid = ctx.peerUid;
  if (uid === 0 || uid === daemonUid()) return;
  const who = uid === undefined ? 'a client whose user the kernel did not report' : `uid ${uid}`;
  throw new BlocksnapError('NotAuthorized',
    `only root or the daemon's user (uid ${daemonUid()}) may ${what}, not ${who}: ${why}`, { uid: uid ?? null, daemonUid: daemonUid() });
}

/**
 * The rights the engine checks the paths of this client's call against: none (undefined) for
 * root and the daemon's user, who hold the daemon's rights anyway. NotAuthorized for a client
 * whose user or groups are unknown: its rights cannot be told, and it is not given the daemon's.
 */
export function clientAccess(ctx: CallContext): UserAccess | undefined {
  const uid = ctx.peerUid;
  if (uid === 0 || uid === daemonUid()) return undefined;
  const creds = ctx.peerCredentials;
  if (uid === undefined || creds === undefined || creds.uid !== uid) {
    const who = uid === undefined ? 'a client whose user the kernel did not report' : `uid ${uid}, whose groups could not be read when it connected`;
    throw new BlocksnapError('NotAuthorized',
      `the daemon opens or creates a file a client names only with that client's own rights, and cannot tell those of ${who}; connect again, or ask root`,
      { uid: uid ?? null });
  }
  return new UserAccess(creds);
}

/** `o` with the client's rights (clientAccess) as `user`, when they are checked. */
export function withUser<O extends object>(ctx: CallContext, o: O): O & { user?: UserAccess } {
  const user = clientAccess(ctx);
  return user === undefined ? o : { ...o, user };
}
