/**
 * A seeded stream of NBD sessions, most of them malformed somewhere (client flags, option
 * headers and lengths, export names, request magic, commands, flags, offsets, lengths, write
 * payloads cut short, connections dropped mid-message), against the real server with eight at a
 * time. What must hold: each bad session ends only itself. A bystander attached before the first
 * one keeps reading the right bytes throughout, the read-only export never changes, and once
 * every fuzzing client has gone the server holds no connection but the bystander's.
 * A failure names its seed; BLOCKSNAP_NBD_FUZZ_SEED=N replays it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { NbdServer } from '../../src/nbd/server';
import { Random, seedFrom } from '../helpers/random';
import { MemoryBackend, table } from './fixtures/memory-backend';
import { bystander, runHostileSessions } from './fixtures/hostile-sessions';

const KiB = 1024;
const MiB = 1024 * KiB;
const SESSIONS = 400;
const AT_ONCE = 8;
const silent = { debug() {}, info() {}, warn() {} };

t.test('malformed NBD sessions end only themselves: a bystander is served throughout and no connection is left', async (t) => {
  const seed = seedFrom('BLOCKSNAP_NBD_FUZZ_SEED');
  t.comment(`seed ${seed}`);
  const r = new Random(seed);
  // A Unix socket path must stay under 108 bytes: not in tap's deep fixture directory.
  const dir = mkdtempSync(join(tmpdir(), 'bsnbdf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'nbd.sock');
  const ro = new MemoryBackend(1 * MiB, false);
  const content = r.bytes(256 * KiB);
  await ro.write(0, content, false);
  const rw = new MemoryBackend(4 * MiB, true);
  const server = new NbdServer(table({ ro, rw }), { socketPath, socketMode: 0o660 }, silent);
  await server.listen();
  t.teardown(() => server.close());

  const reader = await bystander(socketPath, 'ro', content, r, 4 * KiB);
  t.ok(reader.attached, 'the bystander attaches');
  const closedByServer = await runHostileSessions(socketPath, r, { names: ['ro', 'rw'], writable: 'rw', exportSize: rw.size, sessions: SESSIONS, atOnce: AT_ONCE }, () => reader.check());
  t.ok(closedByServer > 0, `the server closed ${closedByServer} sessions it could not go on with`);
  t.ok(rw.writes > 0, `writes reached the read-write export (${rw.writes})`);
  t.ok(ro.data.subarray(0, content.length).equals(content) && ro.data.subarray(content.length).equals(Buffer.alloc(ro.size - content.length)),
    'the read-only export is unchanged');

  const until = Date.now() + 10_000;
  while (server.connectionCount > 1 && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
  t.equal(server.connectionCount, 1, 'only the bystander is still connected');
  await reader.check();
  reader.close();
});
