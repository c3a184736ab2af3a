/**
 * A replication's writer lease is deleted after the job's result, in the background, and a small
 * incremental's blocks go up while the lease is being taken. Against a real Ceph radosgw
 * (test/infra/ceph), through an engine whose object stores are real S3 stores wrapped to record,
 * and hold back, some of their requests.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import type { ReplicateResult } from '../../src/engine/offsite-types';
import { readCredentials, type RemoteConfig } from '../../src/remote/config';
import type { ObjectInfo, ObjectStore, PutOptions } from '../../src/remote/object-store';
import { S3Store } from '../../src/remote/s3-store';
import { useCeph, type Ceph } from '../infra/ceph/fixture';
import { credentialsFile, listKeys, newBucket } from '../infra/ceph/s3';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, sha256File } from '../helpers/images';
import { KiB64 } from '../helpers/model';

const ceph = useCeph(t);

const isWriterLease = (key: string): boolean => /(^|\/)leases\/writer\./.test(key);
const isBlock = (key: string): boolean => /(^|\/)blocks\//.test(key);

/** Hooks of the wrapped stores of one engine, and what they saw. */
class Observer {
  readonly events: string[] = [];
  /** Writer-lease deletions wait for this. */
  holdLeaseDeletes: Promise<void> = Promise.resolve();
  /** Runs before a listing of the leases (the second step of taking one). */
  beforeLeaseList: () => Promise<void> = async () => undefined;
}

/** An S3 store whose requests the observer sees; it holds back what the observer asks it to. */
class ObservedStore implements ObjectStore {
  readonly description: string;
  constructor(private readonly inner: ObjectStore, private readonly o: Observer) { this.description = inner.description; }
  async put(key: string, body: Buffer, signal?: AbortSignal, opts?: PutOptions): Promise<void> {
    await this.inner.put(key, body, signal, opts);
    this.o.events.push(`put ${key}`);
  }
  get(key: string, signal?: AbortSignal): Promise<Buffer | null> { return this.inner.get(key, signal); }
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> { return this.inner.head(key, signal); }
  async *list(prefix: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo> {
    if (prefix.endsWith('leases/')) await this.o.beforeLeaseList();
    yield* this.inner.list(prefix, signal);
  }
  listPage(prefix: string, startAfter: string, signal?: AbortSignal): Promise<{ objects: ObjectInfo[]; more: boolean }> {
    return this.inner.listPage(prefix, startAfter, signal);
  }
  async deleteMany(keys: string[], signal?: AbortSignal): Promise<void> {
    if (keys.some(isWriterLease)) await this.o.holdLeaseDeletes;
    await this.inner.deleteMany(keys, signal);
    for (const k of keys) this.o.events.push(`delete ${k}`);
  }
  check(probeKey: string): Promise<{ latencyMs: number }> { return this.inner.check(probeKey); }
  close(): void { this.inner.close(); }
}

/** An engine with remote `off` on a fresh bucket, and disk `vm` of eight 64 KiB blocks. */
async function setup(t: Test, c: Ceph, label: string) {
  const dir = t.testdir();
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  const observer = new Observer();
  const engine = await Engine.open({
    dataDir, imageRoots: [images], blockSize: KiB64, threads: 1,
    replication: { openStore: (remote: RemoteConfig, onRetry) => new ObservedStore(new S3Store(remote, readCredentials(remote.credentialsFile), { onRetry }), observer) },
  });
  t.teardown(() => engine.close());
  const bucket = await newBucket(c, label);
  engine.offsite.replication.addRemote({ name: 'off', endpoint: c.endpoint, bucket, credentialsFile: credentialsFile(images, c) });
  const path = makeImage(join(images, 'vm.raw'), 8 * KiB64);
  for (let i = 0; i < 8; i++) fillBlock(path, i, KiB64, `vm-${i}`);
  const disk = await engine.addDisk({ path, name: 'vm' });
  const replicate = async (snapshotId: string): Promise<ReplicateResult> =>
    (await finished(engine, engine.offsite.replication.startReplicate(snapshotId, 'off'))).result as ReplicateResult;
  return { engine, observer, bucket, dataDir, images, path, disk, replicate };
}

/** A gate that opens on its own after `ms`: what waits on it is late, not stuck. */
function gate(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

if (ceph) {
  t.test('a replication\'s result comes before its lease is deleted; a gc of the same daemon right after waits for that deletion, not for a poll', async (t) => {
    const { engine, observer, bucket, disk, replicate } = await setup(t, ceph, 'release');
    const s = await snapshot(engine, disk.id);
    // Held until released below, however long the replication itself takes on a loaded machine.
    let release!: () => void;
    observer.holdLeaseDeletes = new Promise<void>((resolve) => { release = resolve; });
    await replicate(s.id);
    const leases = (await listKeys(ceph, bucket)).filter((k) => isWriterLease(k.key));
    t.equal(leases.length, 1, 'the result is there while the lease is still being deleted');

    const gcJob = engine.offsite.remoteGc.startRemoteGc('off', { graceSeconds: 0 });
    setTimeout(release, 300); // the gc is waiting for the deletion meanwhile
    const gc = await finished(engine, gcJob);
    const deleted = observer.events.findIndex((e) => e.startsWith('delete ') && isWriterLease(e.slice('delete '.length)));
    const gcLease = observer.events.findIndex((e) => /^put (.*\/)?leases\/gc\./.test(e));
    t.ok(deleted >= 0 && gcLease > deleted, 'gc took its lease only once the writer lease was gone');
    t.match(gc.result, { manifests: 1, deletedBlocks: 0 }, 'and had no writer to wait for');
    t.equal((await listKeys(ceph, bucket)).filter((k) => /(^|\/)leases\//.test(k.key)).length, 0);
  });

  t.test('closing the engine waits for the lease deletions of ended replications', async (t) => {
    const { engine, observer, bucket, disk, replicate } = await setup(t, ceph, 'close');
    const s = await snapshot(engine, disk.id);
    observer.holdLeaseDeletes = gate(300);
    await replicate(s.id);
    await engine.close();
    t.same((await listKeys(ceph, bucket)).filter((k) => isWriterLease(k.key)), [], 'no lease is left for other hosts to wait out');
  });

  t.test('an incremental\'s blocks, uploaded before the lease was held and then swept by a gc, are uploaded again before the manifest', async (t) => {
    const { engine, observer, bucket, images, path, disk, replicate } = await setup(t, ceph, 'early');
    await replicate((await snapshot(engine, disk.id)).id);
    fillBlock(path, 2, KiB64, 'changed-2');
    fillBlock(path, 5, KiB64, 'changed-5');
    const s2 = await snapshot(engine, disk.id);
    const before = new Set((await listKeys(ceph, bucket)).filter((k) => isBlock(k.key)).map((k) => k.key));
    // A gc that was sweeping before this writer's lease existed deletes the two new blocks once
    // they are up, and ends before the writer lists the leases: the listing shows no gc.
    const sweeper = new S3Store(engine.offsite.replication.getRemote('off'), readCredentials(engine.offsite.replication.getRemote('off').credentialsFile));
    t.teardown(() => sweeper.close());
    observer.beforeLeaseList = async () => {
      observer.beforeLeaseList = async () => undefined;
      for (;;) {
        const added = (await listKeys(ceph, bucket)).filter((k) => isBlock(k.key) && !before.has(k.key)).map((k) => k.key);
        if (added.length === 2) {
          await sweeper.deleteMany(added);
          return;
        }
        await gate(5);
      }
    };
    const r = await replicate(s2.id);
    t.same(r.replicated, [s2.id]);
    t.equal(r.uploadedBlocks, 4, 'each changed block was uploaded, found gone under the lease, and uploaded again');
    const blocks = (await listKeys(ceph, bucket)).filter((k) => isBlock(k.key));
    t.equal(blocks.length, 10, 'the manifest\'s blocks are all there');
    const restored = join(images, 'restored.raw');
    await finished(engine, engine.offsite.remoteRestore.startRestore('off', s2.id, restored));
    t.equal(await sha256File(restored), await sha256File(path), 'the snapshot restores bit for bit');
  });

  t.test('an incremental replicated again uploads nothing', async (t) => {
    const { engine, disk, path, replicate } = await setup(t, ceph, 'again');
    await replicate((await snapshot(engine, disk.id)).id);
    fillBlock(path, 1, KiB64, 'changed-1');
    const s2 = await snapshot(engine, disk.id);
    t.match(await replicate(s2.id), { replicated: [s2.id], uploadedBlocks: 1 });
    t.match(await replicate(s2.id), { replicated: [], alreadyPresent: [s2.id], uploadedBlocks: 0 }, 'the blocks are found there before and under the lease');
  });

  t.test('a damaged block among an incremental\'s early uploads fails the replication with DigestMismatch; no manifest names it', async (t) => {
    const { engine, bucket, dataDir, path, disk, replicate } = await setup(t, ceph, 'early-rot');
    await replicate((await snapshot(engine, disk.id)).id);
    const data = fillBlock(path, 4, KiB64, 'changed-4');
    const s2 = await snapshot(engine, disk.id);
    const hex = createHash('sha256').update(data).digest('hex');
    const file = join(dataDir, 'blocks', hex.slice(0, 3), hex);
    const damaged = readFileSync(file);
    damaged[64 + 100] ^= 0x01; // one bit of the payload; the header stays valid
    writeFileSync(file, damaged);
    const job = await engine.waitJob(engine.offsite.replication.startReplicate(s2.id, 'off').id);
    t.match(job, { state: 'failed', error: { code: 'DigestMismatch', message: new RegExp(hex) } });
    const keys = (await listKeys(ceph, bucket)).map((k) => k.key);
    t.notOk(keys.some((k) => k.endsWith(`${s2.id}.json`)), 'no manifest');
    t.notOk(keys.some((k) => k.endsWith(hex)), 'the damaged bytes are not on the remote');
  });
}
