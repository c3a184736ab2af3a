/**
 * Wire methods of remotes, replication and snapshot streams (docs/protocol.md). Built by a factory
 * that receives methods.ts's `method` and `settle`, so the table reads like the rest and the two
 * modules do not import each other at run time.
 */
import type { Job } from '../engine/types';
import type { CallContext, Method } from './methods';
import { absolutePath, boolean, integer, oneOf, optional, string, text, type ParamsOf, type Shape } from './params';

type MethodFactory = <S extends Shape>(spec: { params: S; run(ctx: CallContext, params: ParamsOf<S>): unknown }) => Method;
type Settle = (ctx: CallContext, job: Job, wait: boolean | undefined) => Promise<Job>;

const wait = optional(boolean);
const concurrency = optional(integer(1, 64));

/** Copies the keys whose value is defined: engine options take absent keys, never undefined. */
function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}

export function offsiteMethods(method: MethodFactory, settle: Settle): Record<string, Method> {
  return {
    'remote.add': method({
      params: { name: string, endpoint: string, bucket: string, prefix: optional(text), region: optional(string), credentialsFile: absolutePath },
      run: (ctx, p) => ctx.engine.offsite.replication.addRemote({
        name: p.name, endpoint: p.endpoint, bucket: p.bucket, credentialsFile: p.credentialsFile, ...defined({ prefix: p.prefix, region: p.region }),
      }),
    }),
    'remote.list': method({ params: {}, run: (ctx) => ctx.engine.offsite.replication.listRemotes() }),
    'remote.show': method({ params: { remote: string }, run: (ctx, p) => ctx.engine.offsite.replication.getRemote(p.remote) }),
    'remote.remove': method({ params: { remote: string }, run: (ctx, p) => ctx.engine.offsite.replication.removeRemote(p.remote) }),
    'remote.check': method({ params: { remote: string }, run: (ctx, p) => ctx.engine.offsite.replication.checkRemote(p.remote) }),
    'remote.snapshots': method({
      params: { remote: string, disk: optional(string) },
      run: (ctx, p) => ctx.engine.offsite.replication.remoteSnapshots(p.remote, p.disk),
    }),
    'remote.delete': method({
      params: { remote: string, snapshot: string },
      run: (ctx, p) => ctx.engine.offsite.replication.deleteRemoteSnapshot(p.remote, p.snapshot),
    }),
    'remote.gc': method({
      params: { remote: string, graceSeconds: optional(integer(0, 10 * 365 * 86_400)), wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.replication.startRemoteGc(p.remote, defined({ graceSeconds: p.graceSeconds })), p.wait),
    }),
    replicate: method({
      params: { source: string, remote: string, concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.replication.startReplicate(p.source, p.remote, defined({ concurrency: p.concurrency })), p.wait),
    }),
    restore: method({
      params: { remote: string, snapshot: string, path: absolutePath, format: optional(oneOf('raw', 'qcow2')), concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.replication.startRestore(p.remote, p.snapshot, p.path, defined({ format: p.format, concurrency: p.concurrency })), p.wait),
    }),
    import: method({
      params: { remote: string, snapshot: string, disk: string, concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.replication.startImport(p.remote, p.snapshot, p.disk, defined({ concurrency: p.concurrency })), p.wait),
    }),
    'snapshot.export': method({
      params: { snapshot: string, path: absolutePath, base: optional(string), wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.streams.startExport(p.snapshot, p.path, defined({ base: p.base })), p.wait),
    }),
    'snapshot.import': method({
      params: { path: absolutePath, disk: string, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.streams.startImport(p.path, p.disk), p.wait),
    }),
  };
}
