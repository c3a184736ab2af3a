/**
 * A user who can write inside an image root races a job that creates a file there: the target's
 * directory is swapped for a symlink to a directory outside the roots, renamed, or deleted while
 * the job runs. Nothing may be created, renamed over or unlinked outside the roots, and no
 * image-sized partial file may be left behind anywhere.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { writePartial } from '../../src/engine/partial-files';
import { writeBlock } from '../../src/store/block-io';
import { applyImage, hashBuffer, writeQcow2 } from '../../src/native/index';
import { openEngine, snapshot } from '../helpers/engine';
import { makeImage, MiB, randomData, writeAt } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { MemoryStore } from '../remote/memory-store';
import { isBlockKey, openHost, replicate, type Host } from '../remote/memory-engine';
import type { Snapshot } from '../../src/engine/types';

/** Swaps `dir` for a symlink to `outside`; the real directory goes on under `dir.real`. */
function swapForSymlink(dir: string, outside: string): string {
  renameSync(dir, `${dir}.real`);
  symlinkSync(outside, dir);
  return `${dir}.real`;
}

/** A host with one snapshot replicated to its remote, and an empty directory to restore into. */
async function replicatedWithRestoreDir(t: Test): Promise<{ h: Host; s: Snapshot; sub: string; outside: string }> {
  const shared = new MemoryStore();
  const h = await openHost(t, shared);
  const d = await h.disk('vm', 8);
  const s = await snapshot(h.engine, d.id);
  await replicate(h, s.id);
  const sub = join(h.images, 'restores');
  mkdirSync(sub);
  const outside = t.testdir();
  return { h, s, sub, outside };
}

t.test('a restore whose target directory becomes a symlink before the file is created writes nothing outside the roots', async (t) => {
  const { h, s, sub, outside } = await replicatedWithRestoreDir(t);
  let swapped = false;
  h.store.hook = (op, key) => {
    // The manifest is fetched after the target was checked and before the file is created.
    if (!swapped && op === 'get' && !isBlockKey(key)) {
      swapped = true;
      swapForSymlink(sub, outside);
    }
  };
  const job = await h.engine.waitJob(h.engine.offsite.remoteRestore.startRestore('off', s.id, join(sub, 'restored.raw')).id);
  t.ok(swapped, 'the directory was swapped mid-job');
  t.match(job, { state: 'failed', error: { code: 'NotAnImage', message: /symlink was swapped/ } });
  t.same(readdirSync(outside), [], 'no file was created outside the roots, not even for a moment');
  t.same(readdirSync(`${sub}.real`), [], 'and none is left in the real directory');
});

t.test('a restore whose target directory is swapped for a symlink while blocks arrive removes its partial file from the real directory', async (t) => {
  const { h, s, sub, outside } = await replicatedWithRestoreDir(t);
  let swapped = false;
  h.store.hook = (op, key) => {
    if (!swapped && op === 'get' && isBlockKey(key)) {
      swapped = true;
      swapForSymlink(sub, outside);
    }
  };
  const job = await h.engine.waitJob(h.engine.offsite.remoteRestore.startRestore('off', s.id, join(sub, 'restored.raw')).id);
  t.ok(swapped, 'the directory was swapped mid-job');
  t.match(job, { state: 'failed', error: { code: 'NotAnImage' } });
  t.same(readdirSync(outside), [], 'nothing was published outside the roots');
  t.same(readdirSync(`${sub}.real`), [], 'the partial file is gone from the directory it was written in');
});

t.test('a clone whose target directory is swapped for a symlink, or renamed, before publishing leaves no partial file behind', async (t) => {
  const root = t.testdir();
  const outside = join(root, 'outside');
  mkdirSync(outside);
  for (const how of ['symlink', 'rename'] as const) {
    const dir = join(root, `vms-${how}`);
    mkdirSync(dir);
    const err = await writePartial(join(dir, 'clone.img'), `j_${how}`, async (partial, at) => {
      await applyImage({ imagePath: partial, dirFd: at?.dirFd, storeDir: join(root, 'store'), blockSize: KiB64, sizeBytes: 64 * KiB64, digests: Buffer.alloc(64 * 32), mode: 'create' });
      if (how === 'symlink') swapForSymlink(dir, outside);
      else renameSync(dir, `${dir}.real`);
    }).catch((e: { code: string }) => e);
    t.match(err, { code: how === 'symlink' ? 'NotAnImage' : 'ImageNotFound' }, `${how}: the job fails`);
    t.same(readdirSync(`${dir}.real`), [], `${how}: its partial file is removed from the moved directory`);
    t.same(readdirSync(outside), [], `${how}: nothing appears outside`);
  }
});

/** Whether this process holds a file open that has no name yet in `dir` (O_TMPFILE: "<dir>/#<inode> (deleted)"). */
function writingNameless(dir: string): boolean {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${dir}/#`)) return true;
    } catch { /* closed meanwhile */ }
  }
  return false;
}

t.test('a clone whose target directory is deleted while it writes fails with ImageNotFound and leaves nothing', async (t) => {
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'vm.img'), 192 * MiB);
  writeAt(img, 0, randomData(192 * MiB));
  await engine.addDisk({ path: img, name: 'vm' });
  const snap = await snapshot(engine, 'vm');
  for (const named of [false, true]) {
    // named: a filesystem without O_TMPFILE, where the file being written has its partial name.
    if (named) process.env.BLOCKSNAP_NO_TMPFILE = '1';
    try {
      const sub = join(images, 'clones');
      mkdirSync(sub);
      const job = engine.startClone(snap.id, join(sub, 'copy.img'));
      const partial = join(sub, `.blocksnap-${job.id}.partial`);
      const writing = (): boolean => (named ? existsSync(partial) : writingNameless(sub));
      while (!writing() && engine.getJob(job.id).state === 'running') await new Promise((r) => setImmediate(r));
      t.equal(engine.getJob(job.id).state, 'running', `${named ? 'named' : 'nameless'}: the clone was still writing`);
      // Once the clone is writing, its directory goes (the partial file first, where it has a name).
      if (named) unlinkSync(partial);
      else t.same(readdirSync(sub), [], 'nameless: the directory is empty, and may be removed');
      rmdirSync(sub);
      const done = await engine.waitJob(job.id);
      t.match(done, { state: 'failed', error: { code: 'ImageNotFound', message: /was removed (or moved )?while the job ran/ } });
      t.same(readdirSync(images).sort(), ['vm.img']);
    } finally {
      delete process.env.BLOCKSNAP_NO_TMPFILE;
    }
  }
});

t.test('a qcow2 rollback never unlinks or renames over files in a directory swapped in for the disk\'s', async (t) => {
  const root = t.testdir();
  const vms = join(root, 'vms');
  const outside = join(root, 'outside');
  mkdirSync(vms);
  mkdirSync(outside);
  const store = join(root, 'store');
  const disk = join(vms, 'disk.qcow2');
  const temp = '.disk.qcow2.blocksnap-rollback';
  const empty = { storeDir: store, blockSize: KiB64, sizeBytes: 16 * KiB64, digests: Buffer.alloc(16 * 32) };
  await writeQcow2({ ...empty, imagePath: disk });

  // Swapped before the native open: the stale-temp cleanup and the create must not go outside.
  writeFileSync(join(outside, temp), 'not ours');
  writeFileSync(join(outside, 'disk.qcow2'), 'not ours either');
  const real = swapForSymlink(vms, outside);
  const err = await writeQcow2({ ...empty, imagePath: join(vms, temp), replace: disk }).catch((e: { code: string }) => e);
  t.match(err, { code: 'NotAnImage' });
  t.equal(readFileSync(join(outside, temp), 'utf8'), 'not ours', 'the file outside under the temp name is not unlinked');
  t.equal(readFileSync(join(outside, 'disk.qcow2'), 'utf8'), 'not ours either');
  rmSync(vms);
  renameSync(real, vms);

  // Swapped while the new image is written: the rename stays in the directory held since the start.
  const blocks = 512;
  const data = randomData(KiB64);
  const hex = hashBuffer(data).toString('hex');
  mkdirSync(join(store, 'tmp'), { recursive: true });
  mkdirSync(join(store, hex.slice(0, 3)), { recursive: true });
  mkdirSync(join(store, hex.slice(0, 3)), { recursive: true });
  await writeBlock(store, hex, data);
  const digests = Buffer.concat(Array.from({ length: blocks }, () => Buffer.from(hex, 'hex')));
  let moved: string | null = null;
  const r = await writeQcow2({
    storeDir: store, blockSize: KiB64, sizeBytes: blocks * KiB64, digests, imagePath: join(vms, temp), replace: disk, threads: 1,
    onProgress: () => { if (moved === null) moved = swapForSymlink(vms, outside); },
  });
  t.ok(moved, 'the directory was swapped mid-write');
  t.equal(r.sizeBytes, blocks * KiB64);
  t.equal(readFileSync(join(outside, temp), 'utf8'), 'not ours', 'nothing was renamed from outside');
  t.equal(readFileSync(join(outside, 'disk.qcow2'), 'utf8'), 'not ours either', 'nor over a file outside');
  t.same(readdirSync(moved!).sort(), ['disk.qcow2'], 'the disk\'s own directory holds the new image, no temp file');
  t.ok(existsSync(join(moved!, 'disk.qcow2')));
});

t.test('an export to a file whose directory is swapped for a symlink publishes nothing outside the roots and leaves no partial file', async (t) => {
  // The stream file was created by path: with the directory swapped before that, it was written
  // outside the roots.
  const { engine, images } = await openEngine(t);
  const img = makeImage(join(images, 'vm.img'), 16 * MiB);
  writeAt(img, 0, randomData(16 * MiB));
  const disk = await engine.addDisk({ path: img });
  const snap = await snapshot(engine, disk.id);
  const sub = join(images, 'streams');
  mkdirSync(sub);
  const outside = join(images, '..', 'outside'); // beside the image root, not in it
  mkdirSync(outside);
  const job = engine.offsite.streams.startExport(snap.id, join(sub, 'vm.bsnap'));
  swapForSymlink(sub, outside); // before the job's first write can finish
  const done = await engine.waitJob(job.id);
  t.match(done, { state: 'failed', error: { code: 'NotAnImage' } });
  t.same(readdirSync(outside), [], 'nothing was created or published outside the roots');
  t.same(readdirSync(`${sub}.real`), [], 'the partial file is gone from the directory it was written in');
});
