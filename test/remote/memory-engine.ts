/**
 * Engines whose remotes live in one shared MemoryStore, each engine a "host" of its own (own data
 * dir, own host id), seen through a FaultStore: tests hold back or fail chosen requests of one
 * host without touching the others.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { Engine, type EngineLogger } from '../../src/engine';
import { BlocksnapError } from '../../src/errors';
import type { Job } from '../../src/engine/types';
import type { LeaseTiming } from '../../src/remote/leases';
import type { ObjectInfo, ObjectStore, PutOptions } from '../../src/remote/object-store';
import { finished } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';
import { KiB64 } from '../helpers/model';
import { MemoryStore } from './memory-store';

export type Op = 'put' | 'get' | 'head' | 'list' | 'listPage' | 'delete';

/** Runs before a request reaches the store: may delay it, or throw in its place. */
export type Hook = (op: Op, key: string) => Promise<void> | void;

/** One host's view of the shared store; `hook` sees every request first. */
export class FaultStore implements ObjectStore {
  readonly description = 'memory';
  hook: Hook = () => undefined;
  constructor(readonly inner: MemoryStore) {}
  async put(key: string, body: Buffer, signal?: AbortSignal, o?: PutOptions): Promise<void> {
    await this.hook('put', key);
    stopIfAborted(signal);
    // As S3 does with a signed payload hash: a body that does not match it is refused.
    if (o?.sha256 !== undefined && createHash('sha256').update(body).digest('hex') !== o.sha256) {
      throw new BlocksnapError('DigestMismatch', `PUT ${key}: the body does not hash to ${o.sha256}`, { digest: o.sha256 });
    }
    await this.inner.put(key, body);
  }
  async get(key: string, signal?: AbortSignal): Promise<Buffer | null> {
    await this.hook('get', key);
    stopIfAborted(signal);
    return this.inner.get(key);
  }
  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    await this.hook('head', key);
    stopIfAborted(signal);
    return this.inner.head(key);
  }
  async *list(prefix: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo> {
    await this.hook('list', prefix);
    stopIfAborted(signal);
    yield* this.inner.list(prefix);
  }
  async listPage(prefix: string, startAfter: string, signal?: AbortSignal): Promise<{ objects: ObjectInfo[]; more: boolean }> {
    await this.hook('listPage', prefix);
    stopIfAborted(signal);
    return this.inner.listPage(prefix, startAfter);
  }
  async deleteMany(keys: string[], signal?: AbortSignal): Promise<void> {
    for (const k of keys) await this.hook('delete', k);
    stopIfAborted(signal);
    await this.inner.deleteMany(keys);
  }
  async check(): Promise<{ latencyMs: number }> { return { latencyMs: 0 }; }
  close(): void {}
}

/** As S3Store reports a request its signal aborted. */
function stopIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new BlocksnapError('Cancelled', 'request aborted');
}

export interface Host {
  engine: Engine;
  store: FaultStore;
  images: string;
  dataDir: string;
  /** A registered raw disk of `blocks` 64 KiB blocks, each filled from `${name}-${i}`. */
  disk(name: string, blocks: number): Promise<{ id: string; path: string }>;
}

/**
 * A host with remote `off` (prefix `site` unless told) on `shared`; removed at teardown unless `dir`
 * is given (then its data dir is `dir`/data, opened again if it exists).
 */
export async function openHost(t: Test, shared: MemoryStore, o: { leaseTiming?: LeaseTiming; dir?: string; prefix?: string; logger?: EngineLogger } = {}): Promise<Host> {
  // Each host its own data dir, hence its own host id.
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'blocksnap-host-'));
  const dataDir = join(dir, 'data');
  const images = join(dir, 'images');
  mkdirSync(images, { recursive: true });
  const store = new FaultStore(shared);
  const engine = await Engine.open({
    dataDir, imageRoots: [images], blockSize: KiB64, threads: 1, ...(o.logger ? { logger: o.logger } : {}),
    replication: { openStore: () => store, ...(o.leaseTiming ? { leaseTiming: o.leaseTiming } : {}) },
  });
  t.teardown(async () => {
    await engine.close();
    if (o.dir === undefined) rmSync(dir, { recursive: true, force: true });
  });
  const credentialsFile = join(dir, 'credentials');
  // A data dir opened again (or copied) has its remote already.
  if (!engine.offsite.replication.listRemotes().some((r) => r.name === 'off')) {
    writeFileSync(credentialsFile, 'aws_access_key_id = a\naws_secret_access_key = b\n', { mode: 0o600 });
    engine.offsite.replication.addRemote({ name: 'off', endpoint: 'http://127.0.0.1:1', bucket: 'shared', prefix: o.prefix ?? 'site', credentialsFile });
  }
  return {
    engine, store, images, dataDir,
    async disk(name, blocks) {
      const path = makeImage(join(images, `${name}.raw`), blocks * KiB64);
      for (let i = 0; i < blocks; i++) fillBlock(path, i, KiB64, `${name}-${i}`);
      const d = await engine.addDisk({ path, name });
      return { id: d.id, path };
    },
  };
}

export async function replicate(h: Host, ref: string): Promise<import('../../src/engine/offsite-types').ReplicateResult> {
  return (await finished(h.engine, h.engine.offsite.replication.startReplicate(ref, 'off'))).result as import('../../src/engine/offsite-types').ReplicateResult;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const isBlockKey = (k: string): boolean => k.startsWith('site/blocks/');
export const isLeaseKey = (k: string): boolean => k.startsWith('site/leases/');

/**
 * Starts a job and cancels it while its first `op` of a block is held (after `whileHeld` looked at
 * it running); returns how it ended.
 */
export async function cancelledAt(h: Host, op: Op, start: () => Job, whileHeld: (job: Job) => void = () => undefined): Promise<Job> {
  let held = false;
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  h.store.hook = async (o, key) => {
    if (o !== op || !isBlockKey(key)) return;
    held = true;
    await released;
  };
  const job = start();
  while (!held) await sleep(5);
  whileHeld(h.engine.getJob(job.id));
  h.engine.cancelJob(job.id);
  release();
  const end = await h.engine.waitJob(job.id);
  h.store.hook = () => undefined;
  return end;
}
