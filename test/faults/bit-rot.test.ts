/**
 * Bit rot in the block store: one flipped byte in a stored block. `store verify` names the block
 * and every snapshot that references it; rollback and clone to such a snapshot fail with
 * DigestMismatch instead of writing the wrong bytes. A damaged header is BlockCorrupt, a vanished
 * file BlockMissing. A raw rollback, written in place, checks every block it needs before it
 * writes any, so it fails with the disk as it was. One that an earlier attempt left partly done
 * stays journaled, its error says so and names the ways out, and `rollback --abandon` gives it up
 * when no snapshot without the block is left to roll back to.
 */
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Disk, Job, Snapshot, VerifyResult } from '../../src/engine/types';
import { ImageWriter } from '../crash/disk-image';
import { Catalog } from '../../src/catalog/catalog';
import { pattern, writeAt } from '../helpers/images';
import { snapshottedDisk, start } from '../helpers/snapshotted-disk';
import { blockPath, flipByte, sha } from '../helpers/store-damage';
import { runCli } from '../integration/fixtures/harness';

const BLOCK = 64 * 1024;

t.test('a flipped byte is found by verify and refused by rollback and clone', async (t) => {
  const { layout, image, daemon, c, s1 } = await snapshottedDisk(t, { label: 'rot', blocks: 4 });
  writeAt(image, 3 * BLOCK, pattern('rot-3b', BLOCK));
  const s2 = ((await c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true })).result as Snapshot);

  const rotten = sha(pattern('rot-0', BLOCK));
  flipByte(blockPath(layout.dataDir, rotten), 64 + 1000);

  const verify = await c.call<Job>('store.verify', { wait: true });
  const result = verify.result as VerifyResult;
  t.equal(result.checkedBlocks, 5, 'every stored block was checked');
  t.equal(result.problems.length, 1, 'exactly the damaged block is reported');
  t.match(result.problems[0], { digest: rotten, reason: 'digest-mismatch' }, 'by digest, as a digest mismatch');
  t.same([...result.problems[0]!.snapshots].sort(), [s1.id, s2.id].sort(), 'with both snapshots that reference it');

  // The image's block 0 differs from the target, so the rollback must read the rotten block.
  const current = pattern('guest-wrote-this', BLOCK);
  writeAt(image, 0, current);
  const rollback = await c.call<Job>('rollback', { disk: 'vm', snapshot: 's1', wait: true });
  t.equal(rollback.state, 'failed', 'rollback to a snapshot with a rotten block fails');
  t.equal(rollback.error?.code, 'DigestMismatch', 'with DigestMismatch');
  t.match(rollback.error?.message, /stopped before it wrote anything: the disk is as it was/, 'which says what the image holds');
  const head = readFileSync(image).subarray(0, BLOCK);
  t.ok(head.equals(current), 'the image block was not overwritten with the rotten bytes');
  const disk = await c.call<Disk>('disk.show', { disk: 'vm' });
  t.equal(disk.pendingRollback, null, 'nothing is journaled: the disk takes snapshots as before');

  const target = join(layout.imageRoot, 'copy.img');
  const clone = await c.call<Job>('clone', { snapshot: 's2', path: target, wait: true });
  t.equal(clone.state, 'failed', 'a clone of a snapshot with a rotten block fails');
  t.equal(clone.error?.code, 'DigestMismatch', 'with DigestMismatch');
  t.notOk(existsSync(target), 'and leaves no partial file');
  t.ok(daemon.alive, 'the daemon keeps serving');
});

t.test('a damaged header is BlockCorrupt and a vanished block is BlockMissing', async (t) => {
  const { layout, image, c } = await snapshottedDisk(t, { label: 'hdr', blocks: 2 });
  const sha0 = ImageWriter.contentSha(image);

  flipByte(blockPath(layout.dataDir, sha(pattern('hdr-0', BLOCK))), 0); // the magic
  unlinkSync(blockPath(layout.dataDir, sha(pattern('hdr-1', BLOCK))));
  const result = (await c.call<Job>('store.verify', { wait: true })).result as VerifyResult;
  t.same(result.problems.map((p) => p.reason).sort(), ['corrupt-header', 'missing'], 'both are reported');
  const target = join(layout.imageRoot, 'copy.img');
  const clone = await c.call<Job>('clone', { snapshot: 's1', path: target, wait: true });
  t.equal(clone.state, 'failed');
  t.ok(['BlockCorrupt', 'BlockMissing'].includes(clone.error!.code), `the clone names the damage (${clone.error!.code})`);
  t.notOk(existsSync(target), 'and leaves no partial file');
  t.equal(ImageWriter.contentSha(image), sha0, 'the source image was never touched');
  t.match(await c.call<Snapshot[]>('snapshot.list'), [{ name: 's1', status: 'available' }], 'the catalog is unchanged');
});

t.test('a raw rollback whose target has a rotten block writes nothing, however late the block comes', async (t) => {
  const BLOCKS = 64;
  const { layout, image, c } = await snapshottedDisk(t, { label: 'late', blocks: BLOCKS });
  for (let i = 0; i < BLOCKS; i++) writeAt(image, i * BLOCK, pattern(`guest-${i}`, BLOCK));
  flipByte(blockPath(layout.dataDir, sha(pattern(`late-${BLOCKS - 1}`, BLOCK))), 64 + 7);
  const before = ImageWriter.contentSha(image);
  const rollback = await c.call<Job>('rollback', { disk: 'vm', snapshot: 's1', wait: true });
  t.equal(rollback.error?.code, 'DigestMismatch');
  t.match(rollback.error?.message, /store verify/, 'the error names store verify');
  t.equal(ImageWriter.contentSha(image), before, 'not one of the 63 good blocks before it was written');
  const again = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'after', wait: true });
  t.equal(again.state, 'succeeded', 'the disk takes snapshots as before');
});

t.test('a raw rollback an earlier attempt left partly done, stopped again by a rotten block: its error names the ways out, --abandon clears it', async (t) => {
  const BLOCKS = 64;
  const first = await snapshottedDisk(t, { label: 'mid', blocks: BLOCKS });
  const { layout, image, s1 } = first;
  const env = { BLOCKSNAP_SOCKET: layout.socketPath };
  // Every snapshot shares the block in the middle: no rollback to any of them can finish.
  for (let i = 0; i < BLOCKS; i++) if (i !== 32) writeAt(image, i * BLOCK, pattern(`now-${i}`, BLOCK));
  await first.c.call<Job>('snapshot.create', { disk: 'vm', name: 's2', wait: true });
  for (let i = 0; i < BLOCKS; i++) writeAt(image, i * BLOCK, pattern(`guest-${i}`, BLOCK));
  // What a daemon killed while the rollback to s1 wrote leaves: its journal, and the first blocks written.
  first.c.close();
  await first.daemon.stop();
  for (let i = 0; i < 10; i++) writeAt(image, i * BLOCK, pattern(`mid-${i}`, BLOCK));
  const catalog = Catalog.open(layout.dataDir, BLOCK);
  catalog.txn(() => {
    const d = catalog.allDisks().find((x) => x.name === 'vm')!;
    catalog.putDisk({ ...d, pendingRollback: { snapshotId: s1.id, startedAt: new Date().toISOString(), jobId: 'j-00000000000000ad' } });
  });
  await catalog.close();
  const { daemon, c } = await start(t, layout);
  flipByte(blockPath(layout.dataDir, sha(pattern('mid-32', BLOCK))), 64 + 7);

  const image1 = ImageWriter.contentSha(image);
  const rollback = await c.call<Job>('rollback', { disk: 'vm', snapshot: 's1', wait: true });
  t.equal(rollback.state, 'failed');
  t.equal(rollback.error?.code, 'DigestMismatch');
  const message = rollback.error?.message ?? '';
  t.match(message, /an earlier rollback to s1 had left the image partly rolled back/, 'the error says the image is partly rolled back');
  t.match(message, /blocksnap store verify/, 'and names store verify');
  t.match(message, /repair the block and rerun \(a snapshot of any disk whose image still holds its content writes it again/, 'a rerun once repaired');
  t.match(message, /roll back to a snapshot that does not share it/, 'another snapshot');
  t.match(message, /blocksnap rollback vm --abandon/, 'and --abandon');
  t.equal(ImageWriter.contentSha(image), image1, 'this attempt wrote nothing');
  t.match((await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback, { snapshotId: s1.id }, 'the rollback stays journaled');
  await t.rejects(c.call('snapshot.create', { disk: 'vm', wait: true }), { code: 'RollbackIncomplete', message: /--abandon/ }, 'snapshots are refused, naming --abandon');
  const s2Rollback = await c.call<Job>('rollback', { disk: 'vm', snapshot: 's2', wait: true });
  t.equal(s2Rollback.error?.code, 'DigestMismatch', 'every snapshot shares the block: no rollback can finish');
  t.match((await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback, { snapshotId: s1.id },
    'the journal still names s1, whose blocks the image partly holds');

  const usage = await runCli(['rollback', 'vm'], env);
  t.equal(usage.code, 2, 'a rollback without SNAPSHOT nor --abandon is a usage error');
  t.match(usage.stderr, /rollback needs a SNAPSHOT \(or --abandon/);
  const wrong = await runCli(['rollback', 'vm', 's2', '--abandon', '--json'], env);
  t.equal(wrong.code, 1, 'abandoning another snapshot\'s rollback is refused');
  t.match(wrong.json(), { error: { code: 'RollbackNotPending', message: /its unfinished rollback is to s-[0-9a-f]{16}/ } });
  const image0 = ImageWriter.contentSha(image);
  const abandoned = await runCli(['rollback', 'vm', '--abandon', '--json'], env);
  t.equal(abandoned.code, 0, abandoned.stderr);
  t.match(abandoned.json(), { abandoned: { snapshotId: /^s-/ }, image: 'partial', message: /mix of the two/ });
  t.equal(ImageWriter.contentSha(image), image0, 'abandoning writes nothing');
  t.equal((await c.call<Disk>('disk.show', { disk: 'vm' })).pendingRollback, null, 'the journal is gone');
  await daemon.waitForLog(/unfinished rollback abandoned/);
  const again = await c.call<Job>('snapshot.create', { disk: 'vm', name: 'kept', wait: true });
  t.equal(again.state, 'succeeded', 'snapshots work again');

  const none = await runCli(['rollback', 'vm', '--abandon'], env);
  t.equal(none.code, 1, '--abandon with nothing pending fails');
  t.match(none.stderr, /blocksnap: disk vm has no unfinished rollback to abandon \[RollbackNotPending\]/);
  const noneJson = await runCli(['rollback', 'vm', '--abandon', '--json'], env);
  t.match(noneJson.json(), { error: { code: 'RollbackNotPending' } });
  const forced = await runCli(['rollback', 'vm', '--abandon', '--force'], env);
  t.equal(forced.code, 2, '--force makes no sense with --abandon');
});
