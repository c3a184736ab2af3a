/**
 * A clone's file has no name until it is complete. A daemon SIGKILLed mid-clone after the
 * clone's directory was renamed must leave nothing anywhere: a named partial file in the moved
 * directory is beyond the reach of the next start (it looks where the job record says), and
 * would keep an image's worth of space forever.
 */
import t from 'tap';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job } from '../../src/engine/types';
import { mountSmallFs } from '../faults/small-fs';
import { DaemonProcess, connect, makeLayout, sleep } from './daemon-process';

const MiB = 1024 * 1024;

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

t.test('a clone killed after its directory was moved leaves no file in either place, and its space comes back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The images on a filesystem of their own where one can be mounted, so that its free space
  // tells whether a nameless file still holds any; elsewhere, the listings alone.
  const fs = mountSmallFs(t, dir, 1024);
  const layout = makeLayout(dir);
  if (!('skip' in fs)) {
    layout.imageRoot = join(fs.dir, 'images');
    mkdirSync(layout.imageRoot);
  } else {
    t.comment(`free space not checked: ${fs.skip}`);
  }
  const img = join(layout.imageRoot, 'vm.img');
  const fd = openSync(img, 'w', 0o600);
  const chunk = randomBytes(4 * MiB);
  for (let i = 0; i < 64; i++) { chunk.writeUInt32LE(i, 0); writeSync(fd, chunk, 0, chunk.length, i * chunk.length); }
  closeSync(fd);
  const clones = join(layout.imageRoot, 'clones');
  const moved = join(layout.imageRoot, 'clones-moved');
  mkdirSync(clones);

  let d = await DaemonProcess.start(layout);
  t.teardown(() => d.kill());
  let c = await connect(layout);
  await c.call('disk.add', { path: img, name: 'vm' });
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true })).state, 'succeeded');
  const free = freeBytes(layout.imageRoot);

  const job = await c.call<Job>('clone', { snapshot: 'base', path: join(clones, 'copy.img'), wait: false });
  let now = job;
  const seen = new Set<string>();
  // Well into the write: a named partial file would hold tens of MiB by now.
  for (let i = 0; i < 20_000 && now.state === 'running' && now.doneBytes < 48 * MiB; i++) {
    for (const name of readdirSync(clones)) seen.add(name);
    await sleep(1);
    now = await c.call<Job>('job.show', { job: job.id });
  }
  t.equal(now.state, 'running', 'the clone was still writing');
  t.ok(now.doneBytes < now.totalBytes, 'and far from done');
  // Frozen mid-write, so that the kill lands there however fast the machine writes.
  process.kill(d.pid, 'SIGSTOP');
  renameSync(clones, moved);
  for (const name of readdirSync(moved)) seen.add(name);
  t.same([...seen], [], 'while the clone wrote, its directory listed no file at all');
  await d.kill();
  c.close();
  t.same(readdirSync(moved), [], 'the kill left nothing in the moved directory');
  t.notOk(existsSync(clones), 'and nothing recreated the old one');

  d = await DaemonProcess.start(layout);
  c = await connect(layout);
  t.match(await c.call<Job>('job.show', { job: job.id }), { state: 'interrupted' });
  t.same(readdirSync(moved), []);
  t.notOk(existsSync(clones));
  if (!('skip' in fs)) {
    let back = freeBytes(layout.imageRoot);
    for (let i = 0; i < 200 && back < free - 4 * MiB; i++) {
      await sleep(50);
      back = freeBytes(layout.imageRoot);
    }
    t.ok(back >= free - 4 * MiB, `the space the clone had written came back (${Math.round((free - back) / MiB)} MiB short)`);
  }
  c.close();
  await d.stop();
});
