/**
 * Wire methods of remotes, replication and snapshot streams (docs/protocol.md). Built by a factory
 * that receives methods.ts's `method` and `settle`, so the table reads like the rest and the two
 * modules do not import each other at run time.
 */
import { BlocksnapError } from '../errors';
import type { Job } from '../engine/types';
import { clientAccess, requireDaemonUser, withUser } from './client-rights';
import type { CallContext, Method } from './methods';
import { absolutePath, boolean, integer, key, objectName, oneOf, optional, string, text, type Field, type ParamsOf, type Shape } from './params';
import { STREAM_CHUNK_BYTES, STREAM_WINDOW_BYTES } from './stream-channels';

type MethodFactory = <S extends Shape>(spec: { params: S; run(ctx: CallContext, params: ParamsOf<S>): unknown }) => Method;
type Settle = (ctx: CallContext, job: Job, wait: boolean | undefined) => Promise<Job>;

const wait = optional(boolean);
const concurrency = optional(integer(1, 64));
const streamId = field('a string of 1 to 128 characters', (v): v is string => typeof v === 'string' && v.length > 0 && v.length <= 128);
const binary = field(`binary data of 1 to ${STREAM_CHUNK_BYTES} bytes`, (v): v is Buffer => Buffer.isBuffer(v) && v.length > 0 && v.length <= STREAM_CHUNK_BYTES);

function field<T>(expected: string, accepts: (value: unknown) => value is T): Field<T> {
  return { expected, optional: false, accepts };
}

/** A stream goes to (or comes from) a file or a socket channel: exactly one of path and stream. */
function onePlace(given: string | undefined, other: string | undefined, name: 'path' | 'stream' = 'path'): string {
  if (given === undefined || other !== undefined) {
    throw new BlocksnapError('InvalidArgument', 'params.path must be given, or params.stream, and not both', { param: name });
  }
  return given;
}

/** Opens a channel, starts its job, and ties the channel's life to the job's. */
function throughChannel<C>(ctx: CallContext, id: string, open: () => C, start: (ch: C) => Job): Job {
  const ch = open();
  let job: Job;
  try {
    job = start(ch);
  } catch (err) {
    ctx.channels.drop(id, new BlocksnapError('StreamClosed', `stream ${id} is closed: its job did not start`));
    throw err;
  }
  ctx.channels.bind(id, ctx.engine.waitJob(job.id));
  return job;
}

/** Copies the keys whose value is defined: engine options take absent keys, never undefined. */
function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/*
 * A remote is the administrator's (only they may add one, remote.add says why), and so are the
 * backups on it: whoever else is let in on the socket may replicate to it, restore from it and
 * check it, but not unhook it or destroy what it holds, which they could not put back.
 */
const UNHOOKS = 'a remote is added with the daemon\'s credentials, so only who may add it back may remove it; ask the administrator';
const DESTROYS = 'the backups on a remote are the administrator\'s, and may be the only copy left; ask the administrator';

export function offsiteMethods(method: MethodFactory, settle: Settle): Record<string, Method> {
  return {
    'remote.add': method({
      params: { name: objectName, endpoint: string, bucket: string, prefix: optional(text), region: optional(string), credentialsFile: absolutePath },
      run: (ctx, p) => {
        // Checked before the file is looked at: the refusal says nothing about it.
        requireDaemonUser(ctx, 'add a remote', 'the daemon reads its credentials file with its own rights and signs with it for the endpoint given; ask the administrator to add it');
        return ctx.engine.offsite.replication.addRemote({
          name: p.name, endpoint: p.endpoint, bucket: p.bucket, credentialsFile: p.credentialsFile, ...defined({ prefix: p.prefix, region: p.region }),
        });
      },
    }),
    'remote.list': method({ params: {}, run: (ctx) => ctx.engine.offsite.replication.listRemotes() }),
    'remote.show': method({ params: { remote: key }, run: (ctx, p) => ctx.engine.offsite.replication.getRemote(p.remote) }),
    'remote.remove': method({
      params: { remote: key },
      run: (ctx, p) => {
        requireDaemonUser(ctx, 'remove a remote', UNHOOKS);
        return ctx.engine.offsite.replication.removeRemote(p.remote);
      },
    }),
    'remote.check': method({ params: { remote: key }, run: (ctx, p) => ctx.engine.offsite.replication.checkRemote(p.remote) }),
    'remote.snapshots': method({
      params: { remote: key, disk: optional(string), damaged: optional(boolean) },
      run: async (ctx, p) => {
        const entries = await ctx.engine.offsite.replication.remoteSnapshots(p.remote, p.disk);
        if (p.damaged === true) return entries;
        // Entries with null fields are new to protocol 1: only a client that asks for them gets
        // them; others get the error this call has always given for a damaged manifest.
        const bad = entries.filter((e) => e.damaged !== null);
        if (bad.length === 0) return entries;
        throw new BlocksnapError('RemoteCorrupt',
          `remote ${p.remote} holds ${bad.length === 1 ? 'a manifest' : `${bad.length} manifests`} that cannot be read (${bad.slice(0, 10).map((e) => e.id).join(', ')}); ` +
          'list them with damaged: true (blocksnap remote snapshots), remove them with remote delete --force',
          { snapshots: bad.map((e) => e.id) });
      },
    }),
    'remote.delete': method({
      params: { remote: key, snapshot: string, force: optional(boolean) },
      run: (ctx, p) => {
        requireDaemonUser(ctx, 'delete a snapshot from a remote', DESTROYS);
        return ctx.engine.offsite.replication.deleteRemoteSnapshot(p.remote, p.snapshot, defined({ force: p.force }));
      },
    }),
    'remote.gc': method({
      params: { remote: key, graceSeconds: optional(integer(0, 10 * 365 * 86_400)), wait },
      run: (ctx, p) => {
        requireDaemonUser(ctx, 'collect garbage on a remote', DESTROYS);
        return settle(ctx, ctx.engine.offsite.remoteGc.startRemoteGc(p.remote, defined({ graceSeconds: p.graceSeconds })), p.wait);
      },
    }),
    'remote.verify': method({
      params: { remote: key, snapshot: optional(string), repair: optional(boolean), concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.remoteVerify.startRemoteVerify(p.remote, p.snapshot, defined({ repair: p.repair, concurrency: p.concurrency })), p.wait),
    }),
    replicate: method({
      params: { source: string, remote: key, concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.replication.startReplicate(p.source, p.remote, defined({ concurrency: p.concurrency })), p.wait),
    }),
    restore: method({
      params: { remote: key, snapshot: string, path: absolutePath, format: optional(oneOf('raw', 'qcow2')), concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.remoteRestore.startRestore(p.remote, p.snapshot, p.path, withUser(ctx, defined({ format: p.format, concurrency: p.concurrency }))), p.wait),
    }),
    import: method({
      params: { remote: key, snapshot: string, disk: string, concurrency, wait },
      run: (ctx, p) => settle(ctx, ctx.engine.offsite.remoteRestore.startImport(p.remote, p.snapshot, p.disk, defined({ concurrency: p.concurrency })), p.wait),
    }),
    'snapshot.export': method({
      params: { snapshot: string, path: optional(absolutePath), stream: optional(streamId), base: optional(string), wait },
      run: (ctx, p) => {
        const streams = ctx.engine.offsite.streams;
        const o = defined({ base: p.base });
        const job = p.stream === undefined
          ? streams.startExport(p.snapshot, onePlace(p.path, p.stream), withUser(ctx, o))
          : throughChannel(ctx, onePlace(p.stream, p.path, 'stream'), () => ctx.channels.openOut(p.stream!), (ch) => streams.startExport(p.snapshot, ch, o));
        return settle(ctx, job, p.wait);
      },
    }),
    'snapshot.import': method({
      params: { path: optional(absolutePath), stream: optional(streamId), disk: string, wait },
      run: (ctx, p) => {
        const streams = ctx.engine.offsite.streams;
        const job = p.stream === undefined
          ? streams.startImport(onePlace(p.path, p.stream), p.disk, clientAccess(ctx))
          : throughChannel(ctx, onePlace(p.stream, p.path, 'stream'), () => ctx.channels.openIn(p.stream!), (ch) => streams.startImport(ch, p.disk));
        return settle(ctx, job, p.wait);
      },
    }),
    'stream.ack': method({
      params: { stream: streamId, bytes: integer(1, STREAM_WINDOW_BYTES) },
      run: (ctx, p) => {
        ctx.channels.ack(p.stream, p.bytes);
        return {};
      },
    }),
    'stream.data': method({
      params: { stream: streamId, data: optional(binary), end: optional(boolean) },
      run: async (ctx, p) => {
        if (p.data === undefined && p.end !== true) throw new BlocksnapError('InvalidArgument', `params.data must be binary data of 1 to ${STREAM_CHUNK_BYTES} bytes unless params.end is true`, { param: 'data' });
        await ctx.channels.data(p.stream, p.data, p.end === true);
        return {};
      },
    }),
  };
}
