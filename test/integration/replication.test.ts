/**
 * Replication against a real Ceph radosgw (test/infra/ceph): two daemons stand for two hosts
 * sharing a bucket. One Ceph for the whole file; each test has its own bucket.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { useCeph, type Ceph } from '../infra/ceph/fixture';
import { credentialsFile, listKeys, newBucket, putObject } from '../infra/ceph/s3';
import { freshDaemon, startDaemon, type Daemon } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble, sha256File } from './fixtures/images';

const ceph = useCeph(t);

async function addRemote(d: Daemon, c: Ceph, bucket: string, name = 'off', extra: string[] = []): Promise<void> {
  const cred = credentialsFile(d.imageRoot, c, { name: `${name}.cred` });
  await d.json('remote', 'add', name, '--endpoint', c.endpoint, '--bucket', bucket, '--credentials', cred, ...extra);
}

const blockKeys = (keys: Array<{ key: string }>): string[] => keys.filter((k) => /(^|\/)blocks\//.test(k.key)).map((k) => k.key);
const manifestKeys = (keys: Array<{ key: string }>): string[] => keys.filter((k) => /(^|\/)manifests\//.test(k.key)).map((k) => k.key);

/**
 * The lease keys left in the bucket. A replication deletes its lease after its result, in the
 * background, so this waits (up to 5 s) for that deletion rather than reading the bucket at once.
 */
async function leasesAfterRelease(c: Ceph, bucket: string): Promise<string[]> {
  for (let i = 0; ; i++) {
    const leases = (await listKeys(c, bucket)).filter((k) => /(^|\/)leases\//.test(k.key)).map((k) => k.key);
    if (leases.length === 0 || i >= 100) return leases;
    await new Promise((r) => setTimeout(r, 50));
  }
}

if (ceph) {
  t.test('a chain replicates; a second run after a small change uploads only the changed blocks', async (t) => {
    const bucket = await newBucket(ceph, 'chain');
    const a = await freshDaemon(t);
    await addRemote(a, ceph, bucket, 'off', ['--prefix', 'site1']);
    t.match(await a.json('remote', 'check', 'off'), { name: 'off', bucket });
    const img = join(a.imageRoot, 'vm.img');
    makeImage(img, 64 * MiB, [0, 1, 2, 3, 5, 8, 9, 10, 11, 12]); // 10 data blocks, 6 holes
    await a.json('disk', 'add', 'vm.img', '--name', 'vm');
    const s1 = await a.json('snapshot', 'create', 'vm', '--name', 's1');
    scribble(img, 2 * BLOCK + 100, 4096);
    const s2 = await a.json('snapshot', 'create', 'vm', '--name', 's2');

    const first = await a.json('replicate', 'vm', '--to', 'off');
    t.same(first.replicated, [s1.id, s2.id], 'both snapshots, oldest first');
    t.equal(first.uploadedBlocks, 11, 'the 10 blocks of s1 and the one block s2 changed');
    t.equal(first.uploadedBytes, 11 * BLOCK);
    let keys = await listKeys(ceph, bucket, 'site1/');
    t.equal(blockKeys(keys).length, 11);
    t.equal(manifestKeys(keys).length, 2);
    t.ok(keys.every((k) => k.key.startsWith('site1/')), 'everything under the prefix');

    scribble(img, 9 * BLOCK, 512); // one block of ten: 10 %
    const s3 = await a.json('snapshot', 'create', 'vm', '--name', 's3');
    const again = await a.json('replicate', 'vm', '--to', 'off');
    t.same(again.replicated, [s3.id]);
    t.same(again.alreadyPresent, [s1.id, s2.id]);
    t.equal(again.uploadedBlocks, 1, 'one changed block uploaded');
    t.equal(again.uploadedBytes, BLOCK);
    keys = await listKeys(ceph, bucket, 'site1/');
    t.equal(blockKeys(keys).length, 12);

    const listed = await a.json('remote', 'snapshots', 'off');
    t.same(listed.map((s: { id: string }) => s.id), [s1.id, s2.id, s3.id]);
    t.match(listed[0], { diskName: 'vm', name: 's1', sizeBytes: 64 * MiB });
    const noop = await a.json('replicate', s3.id, '--to', 'off');
    t.same(noop, { ...noop, replicated: [], alreadyPresent: [s3.id], uploadedBlocks: 0 });
  });

  t.test('restore on a second host is bit-exact, and import fetches only missing blocks', async (t) => {
    const bucket = await newBucket(ceph, 'restore');
    const a = await freshDaemon(t);
    const b = await freshDaemon(t);
    await addRemote(a, ceph, bucket);
    await addRemote(b, ceph, bucket);
    const img = join(a.imageRoot, 'vm.img');
    makeImage(img, 40 * MiB + 12345, [0, 1, 4, 10]); // short last block
    await a.json('disk', 'add', 'vm.img', '--name', 'vm');
    const s1 = await a.json('snapshot', 'create', 'vm', '--name', 's1');
    const h1 = sha256File(img);
    scribble(img, 4 * BLOCK, BLOCK);
    const s2 = await a.json('snapshot', 'create', 'vm', '--name', 's2');
    const h2 = sha256File(img);
    await a.json('replicate', 'vm', '--to', 'off');

    const r1 = await b.json('restore', 'off', 's1', join(b.imageRoot, 'r1.img'));
    t.equal(sha256File(join(b.imageRoot, 'r1.img')), h1, 's1 restored bit for bit on the other host');
    t.equal(r1.downloadedBlocks, 4);
    await b.json('restore', 'off', s2.id, join(b.imageRoot, 'r2.img'));
    t.equal(sha256File(join(b.imageRoot, 'r2.img')), h2);
    const exists = await b.cli('restore', 'off', 's1', join(b.imageRoot, 'r1.img'), '--json');
    t.equal(exists.json().error.code, 'FileExists');

    // Import into the second host's store under a disk of its own.
    makeImage(join(b.imageRoot, 'other.img'), 4 * MiB, []);
    await b.json('disk', 'add', 'other.img', '--name', 'other');
    const i1 = await b.json('import', 'off', s1.id, '--disk', 'other');
    t.match(i1, { snapshotId: s1.id, storedBlocks: 4, presentBlocks: 0 });
    const i2 = await b.json('import', 'off', s2.id, '--disk', 'other');
    t.match(i2, { snapshotId: s2.id, parentId: s1.id, storedBlocks: 1, presentBlocks: 3 }, 'only the changed block is downloaded');
    const twice = await b.json('import', 'off', s2.id, '--disk', 'other');
    t.match(twice, { snapshotId: s2.id, mended: true, repairedBlocks: 0, storedBlocks: 0 }, 'importing it again mends it, and it is whole');
    await b.json('clone', s2.id, join(b.imageRoot, 'c2.img'));
    t.equal(sha256File(join(b.imageRoot, 'c2.img')), h2, 'the imported snapshot clones to the same bytes');
    t.match(await b.json('store', 'verify'), { problems: [] });
  });

  t.test('a daemon killed mid-replication leaves no manifest; a rerun skips what was uploaded', async (t) => {
    const bucket = await newBucket(ceph, 'kill');
    const a = await freshDaemon(t);
    await addRemote(a, ceph, bucket);
    const img = join(a.imageRoot, 'vm.img');
    makeImage(img, 96 * MiB, Array.from({ length: 24 }, (_, i) => i));
    await a.json('disk', 'add', 'vm.img', '--name', 'vm');
    const s = await a.json('snapshot', 'create', 'vm');
    const job = await a.json('replicate', s.id, '--to', 'off', '--concurrency', '1', '--no-wait');
    for (let i = 0; i < 400; i++) {
      if (blockKeys(await listKeys(ceph, bucket)).length >= 3) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await a.stop('SIGKILL');
    let keys = await listKeys(ceph, bucket);
    const partial = blockKeys(keys).length;
    t.ok(partial >= 3 && partial < 24, `killed after ${partial} of 24 blocks`);
    t.equal(manifestKeys(keys).length, 0, 'no manifest before all its blocks');

    const again = await startDaemon(t, { dataDir: a.dataDir, imageRoot: a.imageRoot, socketPath: a.socketPath });
    t.equal((await again.json('job', 'show', job.id)).state, 'interrupted');
    const rerun = await again.json('replicate', s.id, '--to', 'off');
    t.equal(rerun.skippedBlocks + rerun.uploadedBlocks, 24);
    t.ok(rerun.skippedBlocks >= partial, `rerun skipped the ${rerun.skippedBlocks} blocks the first run uploaded`);
    keys = await listKeys(ceph, bucket);
    t.equal(blockKeys(keys).length, 24);
    t.notOk(keys.some((k) => k.key.includes(job.id)), 'the dead run\'s lease was cleared');
    t.same(await leasesAfterRelease(ceph, bucket), [], 'and the rerun\'s own once it ended');
  });

  t.test('remote gc racing a replication from another host loses nothing', async (t) => {
    const bucket = await newBucket(ceph, 'gc');
    const a = await freshDaemon(t);
    const b = await freshDaemon(t);
    await addRemote(a, ceph, bucket);
    await addRemote(b, ceph, bucket);
    // Host A: a snapshot replicated, then deleted on the remote: its blocks are garbage.
    const imgA = join(a.imageRoot, 'a.img');
    makeImage(imgA, 32 * MiB, [0, 1, 2, 3, 4, 5, 6, 7]);
    await a.json('disk', 'add', 'a.img', '--name', 'a');
    const sa = await a.json('snapshot', 'create', 'a');
    await a.json('replicate', sa.id, '--to', 'off');
    // Host B: an image sharing half of A's blocks, so its replication finds them present and skips them.
    const imgB = join(b.imageRoot, 'b.img');
    makeImage(imgB, 96 * MiB, Array.from({ length: 20 }, (_, i) => i + 4));
    const fd = readFileSync(imgA).subarray(0, 4 * BLOCK);
    const { writeFileSync } = await import('node:fs');
    const whole = readFileSync(imgB);
    fd.copy(whole, 0);
    writeFileSync(imgB, whole);
    await b.json('disk', 'add', 'b.img', '--name', 'b');
    const sb = await b.json('snapshot', 'create', 'b');
    await a.json('remote', 'delete', 'off', sa.id);

    // Race: B replicates (skipping the shared blocks A uploaded) while A collects garbage.
    const rep = b.json('replicate', sb.id, '--to', 'off', '--concurrency', '2');
    await new Promise((r) => setTimeout(r, 150));
    const gc = a.json('remote', 'gc', 'off', '--grace', '0');
    const [r, g] = await Promise.all([rep, gc]);
    t.same(r.replicated, [sb.id]);
    // Whoever took its lease first, A's unshared blocks are garbage; the shared ones are garbage only
    // if gc ran before B started (B then uploads them again).
    t.ok(g.deletedBlocks === 4 || g.deletedBlocks === 8, `gc deleted ${g.deletedBlocks} blocks (waited ${g.waitedSeconds} s for B)`);
    // Every block of B's manifest is there: B's snapshot restores bit-exactly on host A.
    await a.json('restore', 'off', sb.id, join(a.imageRoot, 'b-restored.img'));
    t.equal(sha256File(join(a.imageRoot, 'b-restored.img')), sha256File(imgB));
    const g2 = await a.json('remote', 'gc', 'off', '--grace', '0');
    t.equal(g2.deletedBlocks, 4 - Math.min(4, g.deletedBlocks), 'A\'s four unshared blocks are gone in the end');
    t.equal(g2.referencedBlocks, 24);
    t.equal(blockKeys(await listKeys(ceph, bucket)).length, 24);
  });

  /** A daemon with remote `off` on a fresh bucket and one snapshot of a two-block disk `vm`. */
  async function twoBlocks(t: Parameters<typeof freshDaemon>[0], label: string) {
    const bucket = await newBucket(ceph!, label);
    const a = await freshDaemon(t);
    await addRemote(a, ceph!, bucket);
    makeImage(join(a.imageRoot, 'vm.img'), 8 * MiB, [0, 1]);
    await a.json('disk', 'add', 'vm.img', '--name', 'vm');
    return { bucket, a, s: await a.json('snapshot', 'create', 'vm') };
  }

  t.test('a corrupted block on the remote is refused on restore', async (t) => {
    const { bucket, a, s } = await twoBlocks(t, 'rot');
    await a.json('replicate', s.id, '--to', 'off');
    const key = blockKeys(await listKeys(ceph, bucket))[0]!;
    await putObject(ceph, bucket, key, Buffer.alloc(BLOCK, 7));
    const r = await a.cli('restore', 'off', s.id, join(a.imageRoot, 'bad.img'), '--json');
    t.equal(r.code, 1);
    t.match(r.json().error, { code: 'RemoteCorrupt', message: new RegExp(key) }, 'the damaged block is named');
    const { existsSync } = await import('node:fs');
    t.notOk(existsSync(join(a.imageRoot, 'bad.img')), 'the partial image is removed');
  });

  t.test('a block damaged in the local store fails the replication with DigestMismatch naming it; the remote refuses it', async (t) => {
    const { bucket, a, s } = await twoBlocks(t, 'localrot');
    const hex = createHash('sha256').update(readFileSync(join(a.imageRoot, 'vm.img')).subarray(BLOCK, 2 * BLOCK)).digest('hex');
    const file = join(a.dataDir, 'blocks', hex.slice(0, 3), hex);
    const damaged = readFileSync(file);
    damaged[64 + 1000] ^= 0x40; // one bit of the payload; the header stays valid
    writeFileSync(file, damaged);
    const r = await a.cli('replicate', s.id, '--to', 'off', '--json');
    t.equal(r.code, 1);
    t.match(r.json().error, { code: 'DigestMismatch', message: new RegExp(hex) }, 'the damaged block is named');
    const keys = await listKeys(ceph, bucket);
    t.same(manifestKeys(keys), [], 'no manifest names the damaged block');
    t.notOk(blockKeys(keys).some((k) => k.endsWith(hex)), 'the damaged bytes are not on the remote');
  });

  t.test('wrong credentials, an insecure credentials file and an unreachable endpoint give clear codes', async (t) => {
    const bucket = await newBucket(ceph, 'auth');
    const a = await freshDaemon(t);
    const wrong = credentialsFile(a.imageRoot, ceph, { secret: 'not-the-secret', name: 'wrong.cred' });
    await a.json('remote', 'add', 'bad', '--endpoint', ceph.endpoint, '--bucket', bucket, '--credentials', wrong);
    const r = await a.cli('remote', 'check', 'bad', '--json');
    t.equal(r.code, 1);
    t.equal(r.json().error.code, 'RemoteAuthFailed');
    t.notMatch(a.stderr(), /not-the-secret/, 'the secret never reaches the log');
    t.notMatch(r.stdout, /not-the-secret/);

    const loose = credentialsFile(a.imageRoot, ceph, { name: 'loose.cred', mode: 0o644 });
    const l = await a.cli('remote', 'add', 'loose', '--endpoint', ceph.endpoint, '--bucket', bucket, '--credentials', loose, '--json');
    t.equal(l.json().error.code, 'CredentialsInsecure');

    const good = credentialsFile(a.imageRoot, ceph, { name: 'good.cred' });
    await a.json('remote', 'add', 'down', '--endpoint', 'http://127.0.0.1:9', '--bucket', bucket, '--credentials', good);
    const started = Date.now();
    const u = await a.cli('remote', 'check', 'down', '--json');
    t.equal(u.json().error.code, 'RemoteUnreachable');
    t.ok(Date.now() - started < 20_000, 'gives up after a few retries');
    await a.json('remote', 'add', 'nobucket', '--endpoint', ceph.endpoint, '--bucket', 'no-such-bucket-here', '--credentials', good);
    t.equal((await a.cli('remote', 'check', 'nobucket', '--json')).json().error.code, 'RemoteBucketMissing');
    t.equal((await a.cli('replicate', 'vm', '--to', 'nowhere', '--json')).json().error.code, 'RemoteNotFound');
    const shown = await a.json('remote', 'show', 'bad');
    t.same(Object.keys(shown).sort(), ['bucket', 'createdAt', 'credentialsFile', 'endpoint', 'name', 'prefix', 'region']);
  });
}
