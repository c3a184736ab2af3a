/**
 * Watches a running daemon's catalog (read-only, as a second LMDB reader) and SIGKILLs the daemon
 * the moment a snapshot names a group still `creating`: right after a group member's first
 * commit, before the group is settled. Prints what the catalog held at that moment, as JSON:
 * the member, its group, and whether the group's member list named it.
 *
 *   node -e 'require(<test/helpers/ts-require.js>); require(<this file>)' CATALOG_PATH DAEMON_PID
 */
import { open } from 'lmdb';

interface Group { status: string; snapshotIds: string[] }
interface Snapshot { groupId?: string | null }

const [path, pid] = process.argv.slice(-2) as [string, string];
const root = open({ path, compression: false, maxDbs: 32, readOnly: true });
const groups = root.openDB<Group, string>({ name: 'groups' });
const snapshots = root.openDB<Snapshot, string>({ name: 'snapshots' });
process.stdout.write('watching\n');
const deadline = Date.now() + 60_000;
while (Date.now() < deadline) {
  // A read transaction sees the commits made before it began: start a new one each round.
  root.resetReadTxn();
  const creating = new Map([...groups.getRange()].filter((e) => e.value.status === 'creating').map((e) => [e.key, e.value]));
  if (creating.size === 0) continue;
  const hit = [...snapshots.getRange()].find((e) => e.value.groupId && creating.has(e.value.groupId));
  if (!hit) continue;
  process.kill(Number(pid), 'SIGKILL');
  const g = creating.get(hit.value.groupId!)!;
  process.stdout.write(`${JSON.stringify({ snapshotId: hit.key, groupId: hit.value.groupId, listed: g.snapshotIds.includes(hit.key) })}\n`);
  process.exit(0);
}
process.stderr.write('no snapshot naming a group being created was seen\n');
process.exit(1);
