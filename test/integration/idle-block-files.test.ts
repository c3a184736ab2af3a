/**
 * An export nobody reads gives its block files back: the files a served volume keeps open between
 * reads are closed once no read has used them for --block-file-idle. They used to stay open for
 * as long as the export was served, each holding one of the daemon's descriptors.
 */
import { readdirSync, readlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { RawClient } from '../nbd/fixtures/raw-client';
import { startDaemon, tempDir } from './fixtures/harness';
import { BLOCK, makeImage } from './fixtures/images';

const BLOCKS = 8;
const IDLE_SECONDS = 5;

/** The daemon's descriptors open on block files of its store, from /proc/PID/fd. */
function openBlockFiles(pid: number, dataDir: string): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(join(dataDir, 'blocks') + '/')) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

t.test('a served snapshot read and then left idle closes its block files after the idle period', async (t) => {
  const dir = tempDir(t);
  const imageRoot = join(dir, 'images');
  mkdirSync(imageRoot);
  const nbd = join(dir, 'nbd.sock');
  const dataDir = join(dir, 'data');
  const d = await startDaemon(t, { dataDir, imageRoot, socketPath: join(dir, 'd.sock'),
    extraArgs: ['--nbd-socket', nbd, '--block-file-idle', String(IDLE_SECONDS)] });
  makeImage(join(imageRoot, 'vm.img'), BLOCKS * BLOCK, [...Array(BLOCKS).keys()]);
  await d.json('disk', 'add', 'vm.img', '--name', 'vm');
  await d.json('snapshot', 'create', 'vm', '--name', 'one');
  await d.json('export', 'start', 'one', '--name', 'vm-one');
  const pid = d.proc.pid!;
  t.equal(openBlockFiles(pid, dataDir), 0, 'nothing read yet, nothing open');

  const c = await RawClient.open(nbd);
  t.teardown(() => c.socket.destroy());
  await c.greet();
  await c.go('vm-one');
  // 4 KiB of each block: each block is verified whole once, then its file is kept for later reads.
  for (let b = 0; b < BLOCKS; b++) {
    c.request(0, b * BLOCK, 4096, 0, BigInt(b + 1));
    t.equal((await c.simpleReply()).error, 0);
    await c.read(4096);
  }
  const kept = openBlockFiles(pid, dataDir);
  t.ok(kept > 0, `block files kept open after the reads (${kept})`);

  // The client stays connected: an export that is served, not stopped, gives its files back.
  const deadline = Date.now() + 120_000;
  let open = kept;
  while (open > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    open = openBlockFiles(pid, dataDir);
  }
  t.equal(open, 0, 'every block file closed once idle');

  // And the export still reads: the next read opens its file again.
  c.request(0, 3 * BLOCK, 4096, 0, 100n);
  t.equal((await c.simpleReply()).error, 0);
  await c.read(4096);
  t.ok(openBlockFiles(pid, dataDir) > 0, 'a read after the idle period opens the file again');
});
