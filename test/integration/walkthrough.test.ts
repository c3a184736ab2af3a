import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { freshDaemon } from './fixtures/harness';
import { BLOCK, MiB, makeImage, scribble, sha256File } from './fixtures/images';

t.test('add, snapshot, change, snapshot, rollback, clone, delete, stats', async (t) => {
  const d = await freshDaemon(t);
  const img = join(d.imageRoot, 'vm1.img');
  makeImage(img, 24 * MiB, [0, 2, 3]); // blocks 1, 4, 5 are holes

  const disk = await d.json('disk', 'add', 'vm1.img', '--name', 'vm1'); // relative to the CLI's cwd
  t.match(disk, { id: /^d-[0-9a-f]{16}$/, name: 'vm1', path: img, format: 'raw', sizeBytes: 24 * MiB });
  t.same((await d.json('disk', 'list')).map((x: { id: string }) => x.id), [disk.id]);
  t.match(await d.json('disk', 'show', 'vm1'), { id: disk.id });

  const first = await d.json('snapshot', 'create', 'vm1', '--name', 'first', '--description', 'clean install');
  t.match(first, { id: /^s-/, diskId: disk.id, name: 'first', status: 'available', type: 'manual', parentId: null,
    logicalBytes: 3 * BLOCK, newBytes: 3 * BLOCK, description: 'clean install' });
  const firstHash = sha256File(img);

  scribble(img, 2 * BLOCK + 4096, 8192); // one block changes
  const second = await d.json('snapshot', 'create', disk.id, '--name', 'second');
  t.match(second, { status: 'available', parentId: first.id, changedBlocks: 1, newBytes: BLOCK });
  const secondHash = sha256File(img);

  const stats = await d.json('store', 'stats');
  t.match(stats, { blocks: 4, bytes: 4 * BLOCK });
  t.match(await d.json('chain', 'list', 'vm1'), [{ diskId: disk.id, snapshots: 2, storedBlocks: 4 }]);

  const job = await d.json('rollback', 'vm1', 'first');
  t.match(job, { kind: 'rollback', state: 'succeeded', diskId: disk.id, snapshotId: first.id });
  t.equal(sha256File(img), firstHash, 'the image is byte for byte the first snapshot again');

  const clonePath = join(d.imageRoot, 'copy.img');
  const clone = await d.json('clone', 'second', 'copy.img');
  t.match(clone, { path: clonePath, sizeBytes: 24 * MiB, format: 'raw', snapshotId: second.id });
  t.equal(sha256File(clonePath), secondHash, 'the clone is byte for byte the second snapshot');
  const again = await d.cli('clone', 'second', 'copy.img', '--json');
  t.equal(again.code, 1);
  t.match(again.json(), { error: { code: 'FileExists' } });

  t.match(await d.json('snapshot', 'delete', 'second'), { id: second.id });
  t.same((await d.json('snapshot', 'list', 'vm1')).map((s: { id: string }) => s.id), [first.id]);
  const after = await d.json('store', 'stats');
  t.match(after, { blocks: 3, bytes: 3 * BLOCK }, 'the block only the deleted snapshot held is freed');
  t.match(await d.json('store', 'verify'), { checkedBlocks: 3, problems: [] });
  t.match(await d.json('store', 'gc'), { removedBlocks: 0 });

  const human = await d.cli('snapshot', 'list');
  t.equal(human.code, 0);
  t.match(human.stdout, /^ID\s+NAME\s+DISK\s+STATUS/);
  t.match(human.stdout, /first\s+d-[0-9a-f]{16}\s+available\s+manual\s+12 MiB/);

  t.match(await d.json('disk', 'remove', 'vm1', '--delete-snapshots'), { id: disk.id });
  t.ok(existsSync(img) && readFileSync(img).length === 24 * MiB, 'removing a disk leaves its image alone');
  t.equal(await d.stop(), 0, 'SIGTERM exits 0');
  t.notOk(existsSync(d.socketPath), 'the socket file is removed');
});

t.test('--no-wait returns the running job; job wait follows it', async (t) => {
  const d = await freshDaemon(t);
  makeImage(join(d.imageRoot, 'a.img'), 8 * MiB, [0, 1]);
  await d.json('disk', 'add', 'a.img');
  const job = await d.json('snapshot', 'create', 'a.img', '--no-wait');
  t.match(job, { id: /^j-/, kind: 'snapshot' });
  t.match(await d.json('job', 'wait', job.id), { id: job.id, state: 'succeeded' });
  t.match(await d.json('job', 'show', job.id), { state: 'succeeded' });
  t.ok((await d.json('job', 'list')).some((j: { id: string }) => j.id === job.id));
  const v = await d.json('version');
  t.match(v, { client: { protocol: 1 }, daemon: { protocol: 1, dataDir: d.dataDir } });
  const human = await d.cli('version');
  t.equal(human.code, 0);
  const valueColumns = new Set(human.stdout.trimEnd().split('\n').map((l) => /^[a-z ]+: +/.exec(l)?.[0].length));
  t.same([...valueColumns], [13], 'the client line is aligned with the daemon lines');
});
