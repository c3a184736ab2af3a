/**
 * Restore as qcow2, the snapshot quota of a remote import, and remote verify's repair of a block
 * damaged in the bucket, against a real Ceph radosgw (test/infra/ceph) with two daemons standing
 * for two hosts. QEMU's tools judge the qcow2 file.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { encodeManifest } from '../../src/remote/manifest';
import { manifestKey } from '../../src/remote/layout';
import { haveQemu, must, run } from '../helpers/qemu';
import { useCeph, type Ceph } from '../infra/ceph/fixture';
import { credentialsFile, listKeys, newBucket, putObject } from '../infra/ceph/s3';
import { follow, neverBack } from './fixtures/follow-job';
import { freshDaemon, type Daemon } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble } from './fixtures/images';

const ceph = useCeph(t);
const noQemu = haveQemu();

/** Two daemons (hosts) sharing a new bucket as remote `off`; host a has disk `vm` with `blocks` of data, snapshot s1, replicated. */
async function replicatedSnapshot(t: Test, c: Ceph, label: string, image: { size: number; blocks: number[] }, bOptions: string[] = []) {
  const bucket = await newBucket(c, label);
  const a = await freshDaemon(t);
  const b = await freshDaemon(t, bOptions);
  for (const d of [a, b]) {
    await d.json('remote', 'add', 'off', '--endpoint', c.endpoint, '--bucket', bucket, '--credentials', credentialsFile(d.imageRoot, c, { name: 'off.cred' }));
  }
  const img = join(a.imageRoot, 'vm.img');
  makeImage(img, image.size, image.blocks);
  scribble(img, 5 * BLOCK, 4096);
  await a.json('disk', 'add', 'vm.img', '--name', 'vm');
  const s = await a.json('snapshot', 'create', 'vm', '--name', 's1');
  await a.json('replicate', 'vm', '--to', 'off');
  return { bucket, a, b, s };
}

function blockFiles(d: Daemon): number {
  const dir = join(d.dataDir, 'blocks');
  return readdirSync(dir).filter((n) => n !== 'tmp').reduce((a, sub) => a + readdirSync(join(dir, sub)).length, 0);
}

if (ceph) {
  t.test('restore --format qcow2 writes an image QEMU checks clean and reads as the raw restore', { skip: noQemu }, async (t) => {
    // A short last block, holes between the data blocks.
    const { b, s } = await replicatedSnapshot(t, ceph, 'qcow2', { size: 40 * MiB + 12288, blocks: [0, 1, 4, 9] });

    const raw = join(b.imageRoot, 'r.raw');
    const qcow = join(b.imageRoot, 'r.qcow2');
    await b.json('restore', 'off', 's1', raw);
    const r = await b.json('restore', 'off', s.id, qcow, '--format', 'qcow2');
    t.match(r, { format: 'qcow2', downloadedBlocks: 5, path: qcow });
    t.match(JSON.parse(must('qemu-img', ['info', '--output=json', qcow])), { format: 'qcow2', 'virtual-size': s.sizeBytes });
    t.equal(s.sizeBytes, 40 * MiB + 12288);
    const check = run('qemu-img', ['check', qcow]);
    t.equal(check.status, 0, `qemu-img check: ${check.stdout}${check.stderr}`);
    const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, qcow]);
    t.equal(cmp.status, 0, `qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
    t.same(await b.json('snapshot', 'list'), [], 'no local catalog involved');
    for (let i = 0; i < 100 && (await b.json('store', 'stats')).pendingFreeBlocks > 0; i++) await new Promise((res) => setTimeout(res, 100));
    t.equal(blockFiles(b), 0, 'the blocks staged for the writer are swept afterwards');
    const again = await b.cli('restore', 'off', 's1', qcow, '--format', 'qcow2', '--json');
    t.equal(again.json().error.code, 'FileExists');
  });

  t.test('a qcow2 restore counts the blocks it downloads and then the data it writes, never going back', { skip: noQemu }, async (t) => {
    const { b, s } = await replicatedSnapshot(t, ceph, 'qcow2progress', { size: 40 * MiB + 12288, blocks: [0, 1, 4, 9] });
    const f = await follow(t, b, 'restore', { remote: 'off', snapshot: s.id, path: join(b.imageRoot, 'p.qcow2'), format: 'qcow2' });
    // 5 blocks of data (block 5 scribbled): 20 MiB downloaded, then 20 MiB written, not the 40 MiB virtual size.
    t.match(f.end, { totalBytes: 2 * 5 * BLOCK, doneBytes: 2 * 5 * BLOCK });
    neverBack(t, 'qcow2 restore', f);
  });

  t.test('replicate, remote import and raw restore never show their share done going back', async (t) => {
    const { a, b, s } = await replicatedSnapshot(t, ceph, 'neverback', { size: 40 * MiB, blocks: [0, 3, 7] });
    scribble(join(a.imageRoot, 'vm.img'), 2 * BLOCK, BLOCK);
    await a.json('snapshot', 'create', 'vm', '--name', 's2');
    neverBack(t, 'replicate', await follow(t, a, 'replicate', { source: 'vm', remote: 'off' }));
    neverBack(t, 'raw restore', await follow(t, b, 'restore', { remote: 'off', snapshot: s.id, path: join(b.imageRoot, 'p.raw') }));
    makeImage(join(b.imageRoot, 'vm.img'), 40 * MiB, []);
    await b.json('disk', 'add', 'vm.img', '--name', 'vm');
    neverBack(t, 'remote import', await follow(t, b, 'import', { remote: 'off', snapshot: s.id, disk: 'vm' }));
  });

  t.test('a restore that finds a damaged block leaves no qcow2 file behind', { skip: noQemu }, async (t) => {
    const { bucket, b } = await replicatedSnapshot(t, ceph, 'qcow2bad', { size: 24 * MiB, blocks: [0, 2] });
    const key = (await listKeys(ceph, bucket, 'blocks/'))[0]!.key;
    await putObject(ceph, bucket, key, Buffer.alloc(BLOCK, 7));
    const r = await b.cli('restore', 'off', 's1', join(b.imageRoot, 'bad.qcow2'), '--format', 'qcow2', '--json');
    t.equal(r.json().error.code, 'RemoteCorrupt');
    t.notOk(existsSync(join(b.imageRoot, 'bad.qcow2')));
  });

  t.test('a block damaged in the bucket is found by remote verify and uploaded again by the host that holds it', async (t) => {
    const { bucket, a, b } = await replicatedSnapshot(t, ceph, 'verify', { size: 24 * MiB, blocks: [0, 2] });
    const key = (await listKeys(ceph, bucket, 'blocks/'))[0]!.key;
    const good = join(a.imageRoot, 'good.raw');
    await a.json('restore', 'off', 's1', good);
    await putObject(ceph, bucket, key, Buffer.alloc(BLOCK, 7));
    const restore = await b.cli('restore', 'off', 's1', join(b.imageRoot, 'bad.raw'), '--json');
    t.match(restore.json().error, { code: 'RemoteCorrupt', message: /blocksnap remote verify off s-[0-9a-f]{16} --repair/ });

    const found = await b.cli('remote', 'verify', 'off', '--repair', '--json');
    t.equal(found.code, 1, 'damage left: exit 1');
    t.match(found.json().problems, [{ key, problem: 'damaged', repaired: false }], 'host b never held the block');
    const repaired = await a.cli('remote', 'verify', 'off', 's1', '--repair', '--json');
    t.equal(repaired.code, 0);
    t.match(repaired.json().problems, [{ key, repaired: true }]);
    t.equal((await b.cli('remote', 'verify', 'off', '--json')).code, 0, 'clean now');
    const out = join(b.imageRoot, 'restored.raw');
    await b.json('restore', 'off', 's1', out);
    t.ok(readFileSync(out).equals(readFileSync(good)), 'and the snapshot restores');
  });

  t.test('a remote import counts against the disk snapshot quota', async (t) => {
    const { b, s } = await replicatedSnapshot(t, ceph, 'quota', { size: 24 * MiB, blocks: [0] }, ['--manual-snapshot-quota', '1']);
    makeImage(join(b.imageRoot, 'vm.img'), 8 * MiB, []);
    await b.json('disk', 'add', 'vm.img', '--name', 'vm');
    await b.json('snapshot', 'create', 'vm', '--name', 'local');
    const r = await b.cli('import', 'off', s.id, '--disk', 'vm', '--json');
    t.equal(r.code, 1);
    t.equal(r.json().error.code, 'SnapshotQuotaExceeded');
    t.same((await b.json('snapshot', 'list')).map((x: { name: string }) => x.name), ['local']);
    await b.json('snapshot', 'delete', 'local');
    t.match(await b.json('import', 'off', s.id, '--disk', 'vm'), { snapshotId: s.id });
  });

  t.test('an import whose manifest puts a block this host has where its length cannot fit is refused', async (t) => {
    const { bucket, a, b, s } = await replicatedSnapshot(t, ceph, 'wronglen', { size: 24 * MiB, blocks: [0] });
    makeImage(join(b.imageRoot, 'vm.img'), 8 * MiB, []);
    await b.json('disk', 'add', 'vm.img', '--name', 'vm');
    await b.json('import', 'off', s.id, '--disk', 'vm');
    // A forged manifest (its checksum recomputed, as anyone can) names the whole block b now
    // holds at the 4 KiB tail of a snapshot, where no block of that digest can fit.
    const held = createHash('sha256').update(readFileSync(join(a.imageRoot, 'vm.img')).subarray(0, BLOCK)).digest();
    const now = new Date().toISOString();
    const forged = {
      snapshot: {
        id: 's-00000000000000f1', diskId: s.diskId, diskName: 'vm', name: 'forged', description: '', type: 'manual' as const, parentId: null,
        createdAt: now, completedAt: now, sizeBytes: BLOCK + 4096, blockSize: BLOCK, blockCount: 2, logicalBytes: 4096,
      },
      host: 'h00000000000000f1', replicatedAt: now, map: Buffer.concat([Buffer.alloc(32), held]),
    };
    await putObject(ceph, bucket, manifestKey('', s.diskId, forged.snapshot.id), encodeManifest(forged));
    const r = await b.cli('import', 'off', forged.snapshot.id, '--disk', 'vm', '--json');
    t.equal(r.code, 1);
    t.match(r.json().error, { code: 'RemoteCorrupt', message: `puts block ${held.toString('hex')} at a position of 4096 bytes; the block this host has under that digest has ${BLOCK}` });
    t.same((await b.json('snapshot', 'list')).map((x: { name: string }) => x.name), ['s1'], 'only the snapshot imported before');
  });
}
