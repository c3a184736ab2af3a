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
import * as C from '../../src/nbd/constants';
import { Random, seedFrom } from '../helpers/random';
import { hostileSession } from '../nbd/fixtures/hostile-sessions';
import { RawClient } from '../nbd/fixtures/raw-client';
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

  const bystander = await RawClient.open(nbd);
  await bystander.greet();
  const go = await bystander.go('ro');
  t.equal(go[go.length - 1]!.type, C.NBD_REP_ACK, 'the bystander attaches');
  let handle = 1n;
  const check = async (): Promise<void> => {
    const offset = r.int(0, content.length - 64 * 1024);
    const length = r.int(1, 64 * 1024);
    bystander.request(C.NBD_CMD_READ, offset, length, 0, ++handle);
    const reply = await bystander.simpleReply();
    if (reply.error !== 0 || reply.handle !== handle) throw new Error(`seed ${seed}: bystander read failed with error ${reply.error}`);
    if (!(await bystander.read(length)).equals(content.subarray(offset, offset + length))) throw new Error(`seed ${seed}: bystander read wrong bytes at ${offset}`);
  };

  const one = async (bytes: Buffer, linger: boolean): Promise<void> => {
    const c = await RawClient.open(nbd);
    try {
      await c.read(18);
      c.write(bytes);
      if (linger) await c.closes(300);
    } finally {
      c.close();
    }
  };
  for (let done = 0; done < SESSIONS; done += AT_ONCE) {
    await Promise.all(Array.from({ length: AT_ONCE }, () => one(hostileSession(r, ['ro', 'c'], content.length), r.chance(0.5))));
    await check();
  }

  // Every fuzzing client has gone: only the bystander may still hold a connection.
  const until = Date.now() + 10_000;
  let exports: Array<{ name: string; connections: number }> = [];
  do {
    exports = await d.json('export', 'list');
    if (exports.every((e) => e.connections === (e.name === 'ro' ? 1 : 0))) break;
    await new Promise((res) => setTimeout(res, 100));
  } while (Date.now() < until);
  t.same(exports.map((e) => [e.name, e.connections]).sort(), [['c', 0], ['ro', 1]], 'only the bystander is still connected');
  await check();
  bystander.close();

  // Whatever the sessions managed to write, the disk and a snapshot taken now must agree.
  const after = await d.json('snapshot', 'create', 'c', '--name', 'after');
  t.ok(after.changedBlocks > 0, `the sessions' writes reached the copy-on-write disk (${after.changedBlocks} blocks changed)`);
  const copy = join(imageRoot, 'after.img');
  await d.json('clone', 'after', copy);
  const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', copy, served.uri as string], { encoding: 'utf8' });
  t.equal(cmp.status, 0, `the served disk reads as its new snapshot: ${cmp.stdout}${cmp.stderr}`);
  t.match(await d.json('store', 'verify'), { problems: [] }, 'store verify is clean');
});
