/**
 * Something other than a regular file under a block's name: a FIFO, a symlink (even to a good
 * copy of the block), a directory. Readers report it as a corrupt block (a FIFO without hanging
 * the job on it), and the next snapshot of a disk holding the block's bytes puts a fresh file in
 * its place; a directory with something in it is left alone, the snapshot saying to remove it.
 */
import { copyFileSync, lstatSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Job, VerifyResult } from '../../src/engine/types';
import { ImageWriter } from '../crash/disk-image';
import { pattern } from '../helpers/images';
import { snapshottedDisk } from '../helpers/snapshotted-disk';
import { blockPath, sha } from '../helpers/store-damage';

const BLOCK = 64 * 1024;

function mkfifo(path: string): void {
  const r = spawnSync('mkfifo', ['-m', '600', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfifo: ${r.stderr || r.error?.message}`);
}

t.test('a FIFO in place of a block: verify and clone report it corrupt, and the next snapshot writes the block again', async (t) => {
  const { layout, image, c, s1 } = await snapshottedDisk(t, { label: 'f', blocks: 3 });
  const sha1 = ImageWriter.contentSha(image);
  const victim = blockPath(layout.dataDir, sha(pattern('f-1', BLOCK)));
  unlinkSync(victim);
  mkfifo(victim);

  const found = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.match(found.problems, [{ digest: sha(pattern('f-1', BLOCK)), reason: 'corrupt-header', message: /not a regular file/, snapshots: [s1.id], repairable: true }]);
  const clone = await c.call<Job>('clone', { snapshot: 's1', path: join(layout.imageRoot, 'copy.img'), wait: true });
  t.equal(clone.error?.code, 'BlockCorrupt', 'the clone fails instead of waiting on the FIFO');

  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true })).state, 'succeeded');
  t.ok(lstatSync(victim).isFile(), 'a regular file holds the block again');
  t.same(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems, [], 'verify is clean');
  const again = await c.call<Job>('clone', { snapshot: 's1', path: join(layout.imageRoot, 'copy2.img'), wait: true });
  t.equal(again.state, 'succeeded');
  t.equal(ImageWriter.contentSha(join(layout.imageRoot, 'copy2.img')), sha1, 'the old snapshot clones bit-exact');
});

t.test('a symlink to a good copy in place of a block is corrupt, and the next snapshot replaces the link with the block', async (t) => {
  const { layout, c } = await snapshottedDisk(t, { label: 's', blocks: 2 });
  const digest = sha(pattern('s-0', BLOCK));
  const victim = blockPath(layout.dataDir, digest);
  const elsewhere = mkdtempSync(join(tmpdir(), 'bsl-'));
  t.teardown(() => rmSync(elsewhere, { recursive: true, force: true }));
  const copy = join(elsewhere, 'copy');
  copyFileSync(victim, copy);
  unlinkSync(victim);
  spawnSync('ln', ['-s', copy, victim]);

  const found = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.match(found.problems, [{ digest, reason: 'corrupt-header', message: /not a regular file/, repairable: true }]);
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true })).state, 'succeeded');
  t.ok(lstatSync(victim).isFile(), 'the link was replaced by the block file');
  t.ok(lstatSync(copy).isFile(), 'what the link led to is left alone');
  t.same(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems, []);
});

t.test('an empty directory in place of a block goes, and the next snapshot writes the block again', async (t) => {
  const { layout, c } = await snapshottedDisk(t, { label: 'd', blocks: 2 });
  const victim = blockPath(layout.dataDir, sha(pattern('d-1', BLOCK)));
  unlinkSync(victim);
  mkdirSync(victim);

  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true })).state, 'succeeded');
  t.ok(lstatSync(victim).isFile(), 'a regular file holds the block again');
  t.same(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems, []);
});

t.test('a directory with something in it is left alone: the snapshot fails naming it, and succeeds once it is removed', async (t) => {
  const { layout, c } = await snapshottedDisk(t, { label: 'n', blocks: 2 });
  const victim = blockPath(layout.dataDir, sha(pattern('n-1', BLOCK)));
  unlinkSync(victim);
  mkdirSync(victim);
  writeFileSync(join(victim, 'keep'), 'not blocksnap\'s');

  const failed = await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true });
  t.equal(failed.error?.code, 'BlockCorrupt');
  t.match(failed.error?.message, `${victim} is a directory that is not empty; remove it by hand`);
  t.ok(lstatSync(join(victim, 'keep')).isFile(), 'its content is untouched');

  rmSync(victim, { recursive: true });
  t.equal((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's3', wait: true })).state, 'succeeded');
  t.ok(lstatSync(victim).isFile());
  t.same(((await c.call<Job>('store.verify', { wait: true })).result as VerifyResult).problems, []);
});
