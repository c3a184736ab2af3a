/**
 * Hostile NBD sessions against the real daemon: a read-only export of a snapshot and a writable
 * copy-on-write disk, so that the malformed and the well-formed requests among them reach the
 * native volume code (copy-ups, zeroing, trims, block status) rather than an in-memory backend.
 * A failure names its seed; BLOCKSNAP_NBD_FUZZ_SEED=N replays it.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Random, seedFrom } from '../helpers/random';
import { bystander, runHostileSessions } from '../nbd/fixtures/hostile-sessions';
import { startDaemon, tempDir } from './fixtures/harness';
import { BLOCK, makeImage } from './fixtures/images';

const SESSIONS = 160;
const AT_ONCE = 8;
const skip = spawnSync('qemu-img', ['--version']).status !== 0 ? 'qemu-img is not installed' : false;

t.test('hostile NBD sessions end only themselves; the served disk stays consistent with its snapshots', { skip }, async (t) => {
  const seed = seedFrom('BLOCKSNAP_NBD_FUZZ_SEED');
  t.comment(`seed ${seed}`);
  const r = new Random(seed);
  const dir = tempDir(t, 'bsh-');
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot);
  const nbd = join(dir, 'nbd.sock');
  const d = await startDaemon(t, { dataDir: join(dir, 'data'), imageRoot, socketPath: join(dir, 'd.sock'), extraArgs: ['--nbd-socket', nbd] });
  const img = join(imageRoot, 'vm.img');
  makeImage(img, 4 * BLOCK, [0, 2]);
  const content = readFileSync(img);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  await d.json('snapshot', 'create', 'vm', '--name', 'base');
  await d.json('export', 'start', 'base', '--name', 'ro');
  await d.json('clone', 'base', '--cow', '--name', 'c');
  const served = await d.json('export', 'start', 'c', '--writable');

  const reader = await bystander(nbd, 'ro', content, r, 64 * 1024);
  t.ok(reader.attached, 'the bystander attaches');
  await runHostileSessions(nbd, r, { names: ['ro', 'c'], writable: 'c', exportSize: content.length, sessions: SESSIONS, atOnce: AT_ONCE }, () => reader.check());

  // Every fuzzing client has gone: only the bystander may still hold a connection.
  const until = Date.now() + 10_000;
  let exports: Array<{ name: string; connections: number }> = [];
  do {
    exports = await d.json('export', 'list');
    if (exports.every((e) => e.connections === (e.name === 'ro' ? 1 : 0))) break;
    await new Promise((res) => setTimeout(res, 100));
  } while (Date.now() < until);
  t.same(exports.map((e) => [e.name, e.connections]).sort(), [['c', 0], ['ro', 1]], 'only the bystander is still connected');
  await reader.check();
  reader.close();

  // Whatever the sessions managed to write, the disk and a snapshot taken now must agree.
  const after = await d.json('snapshot', 'create', 'c', '--name', 'after');
  t.ok(after.changedBlocks > 0, `the sessions' writes reached the copy-on-write disk (${after.changedBlocks} blocks changed)`);
  const copy = join(imageRoot, 'after.img');
  await d.json('clone', 'after', copy);
  const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', copy, served.uri as string], { encoding: 'utf8' });
  t.equal(cmp.status, 0, `the served disk reads as its new snapshot: ${cmp.stdout}${cmp.stderr}`);
  t.match(await d.json('store', 'verify'), { problems: [] }, 'store verify is clean');
});
