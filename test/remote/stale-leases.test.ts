/**
 * Leases a dead daemon left on the bucket: its own data dir's next daemon clears them at once
 * (docs/design.md "Remote gc", rule 6), and nothing else does, not even a daemon of a copy of that
 * data dir, which has the same host id.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Engine } from '../../src/engine';
import { Catalog } from '../../src/catalog/catalog';
import { leaseKey, type LeaseTiming } from '../../src/remote/leases';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, sha256File } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { DirStore } from './dir-store';
import { MemoryStore } from './memory-store';
import { isLeaseKey, openHost, replicate, sleep } from './memory-engine';

const TS_REQUIRE = join(__dirname, '..', 'helpers', 'ts-require.js');

t.test('a daemon killed mid-replication: the next one deletes the dead job\'s writer lease as it starts, and its gc does not wait', async (t) => {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  const bucketDir = join(dir, 'bucket');
  mkdirSync(images);
  mkdirSync(bucketDir);
  const bucket = new DirStore(bucketDir);
  // The dead job's lease would stay live for a minute; gc gives up long before.
  const ttlMs = 60_000;
  const timing: LeaseTiming = { ttlMs, skewMs: 1000, waitMs: 3000, pollMs: 50 };
  const open = (): Promise<Engine> => Engine.open({
    dataDir, imageRoots: [images], blockSize: KiB64, threads: 1, replication: { openStore: () => bucket, leaseTiming: timing },
  });

  let engine = await open();
  const credentialsFile = join(dir, 'credentials');
  writeFileSync(credentialsFile, 'aws_access_key_id = a\naws_secret_access_key = b\n', { mode: 0o600 });
  engine.offsite.replication.addRemote({ name: 'off', endpoint: 'http://127.0.0.1:1', bucket: 'shared', prefix: 'site', credentialsFile });
  const path = makeImage(join(images, 'vm.raw'), 4 * KiB64);
  for (let i = 0; i < 4; i++) fillBlock(path, i, KiB64, `vm-${i}`);
  const disk = await engine.addDisk({ path, name: 'vm' });
  const s = await snapshot(engine, disk.id);
  const hostId = engine.offsite.replication.remotes.hostId;
  await engine.close();

  // Required from -e: a .ts main module would go through the ES module loader tap hooks into children.
  const main = `require(${JSON.stringify(TS_REQUIRE)}); require(${JSON.stringify(join(__dirname, 'crashed-writer.ts'))})`;
  const child = spawn(process.execPath, ['-e', main, dataDir, images, bucketDir, s.id, String(ttlMs)], {
    cwd: join(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => { child.kill('SIGKILL'); await exited; });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const jobId = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /holding (j-[0-9a-f]{16})\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then(() => reject(new Error(`the replicating child exited early: ${stderr}`)));
  });
  t.same(bucket.keys('site/leases/'), [`site/leases/writer.${hostId}.${jobId}.json`], 'the child holds its writer lease');
  child.kill('SIGKILL');
  await exited;

  engine = await open();
  t.teardown(() => engine.close());
  t.match(engine.getJob(jobId), { kind: 'replicate', state: 'interrupted' }, 'this data dir ran the job, and it is dead');
  await engine.offsite.replication.settleReleases();
  t.same(bucket.keys('site/leases/'), [], 'deleted at start-up: other hosts need not wait it out');
  const started = Date.now();
  const gc = await engine.waitJob(engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }).id);
  t.match(gc, { state: 'succeeded', result: { manifests: 0, deletedBlocks: 4 } }, 'gc ran, and freed the blocks the dead job uploaded');
  t.ok(Date.now() - started < 2000, `without waiting for the lease (${Date.now() - started} ms)`);
  t.same(bucket.keys('site/leases/'), [], 'no lease is left');

  const again = await finished(engine, engine.offsite.replication.startReplicate(s.id, 'off'));
  t.match(again.result, { replicated: [s.id], uploadedBlocks: 4 });
  const out = join(images, 'restored.raw');
  await finished(engine, engine.offsite.remoteRestore.startRestore('off', s.id, out));
  t.equal(await sha256File(out), await sha256File(path));
});

t.test('a daemon of a copied data dir, which has the same host id, leaves the leases of the original\'s jobs alone', async (t) => {
  const shared = new MemoryStore();
  const timing: LeaseTiming = { ttlMs: 600, skewMs: 100, waitMs: 5000, pollMs: 20 };
  const dirA = t.testdir();
  const dirB = mkdtempSync(join(tmpdir(), 'blocksnap-copy-'));
  t.teardown(() => rmSync(dirB, { recursive: true, force: true }));
  const first = await openHost(t, shared, { leaseTiming: timing, dir: dirA });
  const d = await first.disk('vm', 4);
  const s = await snapshot(first.engine, d.id);
  await first.engine.close();
  cpSync(dirA, dirB, { recursive: true });
  const a = await openHost(t, shared, { leaseTiming: timing, dir: dirA });
  const b = await openHost(t, shared, { leaseTiming: { ...timing, waitMs: 500 }, dir: dirB });
  t.equal(b.engine.offsite.replication.remotes.hostId, a.engine.offsite.replication.remotes.hostId, 'the copy has the same host id');

  // The original replicates and holds before its manifest.
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  a.store.hook = async (op, key) => { if (op === 'put' && key.includes('/manifests/')) await held; };
  const aJob = a.engine.offsite.replication.startReplicate(s.id, 'off');
  while (![...shared.objects.keys()].some((k) => k.includes('/leases/writer.') && k.includes(aJob.id))) await sleep(10);
  const aLease = [...shared.objects.keys()].find((k) => isLeaseKey(k) && k.includes(aJob.id))!;

  const gc = await b.engine.waitJob(b.engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 }).id);
  t.match(gc, { state: 'failed', error: { code: 'RemoteBusy' } }, 'the copy\'s gc waits for the original\'s replication');
  t.ok(shared.objects.has(aLease), 'and left its lease');
  t.match(await replicate(b, s.id), { replicated: [s.id] }, 'the copy replicates the same snapshot meanwhile');
  t.ok(shared.objects.has(aLease), 'and left the original\'s lease too');

  release();
  t.match(await a.engine.waitJob(aJob.id), { state: 'succeeded' });
  const out = join(a.images, 'restored.raw');
  await finished(a.engine, a.engine.offsite.remoteRestore.startRestore('off', s.id, out));
  t.equal(await sha256File(out), await sha256File(d.path));
});

t.test('the gc lease of a remote gc a crash interrupted is deleted as the next daemon starts, so other hosts replicate at once', async (t) => {
  const shared = new MemoryStore();
  // Other hosts would wait out a live gc lease (a minute here) and give up after 2 s.
  const timing: LeaseTiming = { ttlMs: 60_000, skewMs: 1000, waitMs: 2000, pollMs: 20 };
  const dir = t.testdir();
  const first = await openHost(t, shared, { leaseTiming: timing, dir });
  const hostId = first.engine.offsite.replication.remotes.hostId;
  await first.engine.close();
  // What a SIGKILL during a remote gc leaves: the job recorded running, its lease on the bucket.
  const jobId = 'j-00000000000000aa';
  const catalog = Catalog.open(join(dir, 'data'), KiB64);
  catalog.putJob({
    id: jobId, kind: 'remote-gc', state: 'running', diskId: null, snapshotId: null, target: 'off', doneBytes: 0, totalBytes: 0,
    progressUnit: 'blocks', startedAt: new Date().toISOString(), finishedAt: null, result: null, error: null,
  });
  await catalog.close();
  const lease = leaseKey('site', 'gc', hostId, jobId);
  await shared.put(lease, Buffer.from('{}'));

  const other = await openHost(t, shared, { leaseTiming: timing });
  const o = await other.disk('vm', 2);
  const s = await snapshot(other.engine, o.id);
  const held = await other.engine.waitJob(other.engine.offsite.replication.startReplicate(s.id, 'off').id);
  t.match(held, { state: 'failed', error: { code: 'RemoteBusy' } }, 'while the dead gc\'s lease is there, another host cannot replicate');

  const again = await openHost(t, shared, { leaseTiming: timing, dir });
  t.match(again.engine.getJob(jobId), { state: 'interrupted' });
  await again.engine.offsite.replication.settleReleases();
  t.notOk(shared.objects.has(lease), 'the restarted daemon deleted it');
  t.match(await replicate(other, s.id), { replicated: [s.id] }, 'and the other host replicates');
});

t.test('the writer lease of a remote verify --repair a crash interrupted is deleted as the next daemon starts', async (t) => {
  const shared = new MemoryStore();
  const dir = t.testdir();
  const first = await openHost(t, shared, { dir });
  const hostId = first.engine.offsite.replication.remotes.hostId;
  await first.engine.close();
  const jobId = 'j-00000000000000ab';
  const catalog = Catalog.open(join(dir, 'data'), KiB64);
  catalog.putJob({
    id: jobId, kind: 'remote-verify', state: 'running', diskId: null, snapshotId: null, target: 'off', doneBytes: 0, totalBytes: 0,
    progressUnit: 'blocks', startedAt: new Date().toISOString(), finishedAt: null, result: null, error: null,
  });
  await catalog.close();
  const lease = leaseKey('site', 'writer', hostId, jobId);
  await shared.put(lease, Buffer.from('{}'));
  const again = await openHost(t, shared, { dir });
  await again.engine.offsite.replication.settleReleases();
  t.notOk(shared.objects.has(lease), 'no gc of another host waits it out');
});
