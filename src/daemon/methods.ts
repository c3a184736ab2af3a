/**
 * The method table: every request method the daemon serves, its params and what it calls. The
 * methods map 1:1 onto the engine; the daemon adds only the wire concerns (validation, waiting
 * for a job and streaming its progress). docs/protocol.md documents each entry and a test checks
 * that the two list the same methods.
 */
import { BlocksnapError } from '../errors';
import type { Job } from '../engine/types';
import type { DaemonEngine } from './engine-port';
import { absolutePath, boolean, integer, key, objectName, oneOf, optional, string, text, validateParams, type ParamsOf, type Shape } from './params';
import { PROTOCOL_VERSION, type Params } from './protocol/messages';
import { stringMap } from './model-params';
import { modelMethods } from './model-methods';
import { matchesTags } from '../engine/tags';
import { offsiteMethods } from './offsite-methods';
import { exportMethods } from './export-methods';
import type { StreamChannels } from './stream-channels';
import type { UserCredentials } from '../engine/user-access';
import { clientAccess, requireDaemonUser, withUser } from './client-rights';

export interface DaemonInfo {
  version: string;
  /** src/daemon/build-info.ts buildId(). */
  build: string;
  pid: number;
  startedAt: string;
}

/** What a method may use: the engine, and the calling connection's job subscriptions. */
export interface CallContext {
  readonly engine: DaemonEngine;
  readonly info: DaemonInfo;
  /** Streams `progress` events of the job to the caller until the job ends or unwatch is called. */
  watch(jobId: string): void;
  unwatch(jobId: string): void;
  /**
   * Subscribes the caller to a job a waiting call started and sends the job at once, never
   * dropped: a call that answers only when its jobs ended (policy.run, group.create, group.rollback
   * with wait) names them no other way, and its caller needs their ids to cancel them on Ctrl-C.
   * Absent where no connection stands behind the context (tests of the method table).
   */
  announce?(job: Job): void;
  /** The connection's stream channels (snapshot export/import through the socket). */
  readonly channels: StreamChannels;
  /**
   * The client's uid as the kernel gave it when the client connected (SO_PEERCRED), never as the
   * client says; undefined when the kernel would not say, which no call takes as root.
   */
  readonly peerUid: number | undefined;
  /**
   * The client's uid, gid and supplementary groups, read when it connected (SO_PEERCRED and
   * /proc/PID/status, peer-credentials.ts); undefined when they could not be, and then a client
   * that is neither root nor the daemon's user may name no path (client-rights.ts).
   */
  readonly peerCredentials?: UserCredentials | undefined;
}

interface MethodSpec<S extends Shape> {
  params: S;
  run(ctx: CallContext, params: ParamsOf<S>): unknown;
}

export interface Method {
  readonly params: Shape;
  call(ctx: CallContext, params: Params): Promise<unknown>;
}

function method<S extends Shape>(spec: MethodSpec<S>): Method {
  return {
    params: spec.params,
    // async so that an engine call that throws synchronously still becomes a rejected promise.
    call: async (ctx, raw) => spec.run(ctx, validateParams(spec.params, raw)),
  };
}

const format = optional(oneOf('raw', 'qcow2'));
const wait = optional(boolean);

/**
 * A long job either returns at once (the job as started) or, with wait, once it ended in any state:
 * the call succeeded even when the job failed, and the job's own error says why.
 */
async function settle(ctx: CallContext, job: Job, waitForIt: boolean | undefined): Promise<Job> {
  if (waitForIt !== true) return job;
  ctx.watch(job.id);
  try {
    return await ctx.engine.waitJob(job.id);
  } finally {
    ctx.unwatch(job.id);
  }
}

export const METHODS: Readonly<Record<string, Method>> = {
  hello: method({
    params: { protocol: integer(0), client: optional(text) },
    run: (ctx, p) => {
      if (p.protocol !== PROTOCOL_VERSION) {
        throw new BlocksnapError('VersionMismatch', `client speaks protocol ${p.protocol}, this daemon speaks protocol ${PROTOCOL_VERSION}`, {
          daemonProtocol: PROTOCOL_VERSION,
          clientProtocol: p.protocol,
        });
      }
      return { protocol: PROTOCOL_VERSION, version: ctx.info.version, build: ctx.info.build, pid: ctx.info.pid };
    },
  }),
  version: method({
    params: {},
    run: (ctx) => ({
      version: ctx.info.version,
      build: ctx.info.build,
      protocol: PROTOCOL_VERSION,
      node: process.version,
      pid: ctx.info.pid,
      startedAt: ctx.info.startedAt,
      dataDir: ctx.engine.dataDir,
      imageRoots: ctx.engine.imageRoots,
      nbdSocket: ctx.engine.exports.endpoint(),
    }),
  }),

  'disk.add': method({
    params: { path: absolutePath, name: optional(objectName), format },
    run: (ctx, p) => ctx.engine.addDisk(p, clientAccess(ctx)),
  }),
  'disk.list': method({ params: {}, run: (ctx) => ctx.engine.listDisks() }),
  'disk.show': method({ params: { disk: string }, run: (ctx, p) => ctx.engine.getDisk(p.disk) }),
  'disk.relocate': method({
    params: { disk: string, path: absolutePath },
    run: (ctx, p) => ctx.engine.relocateDisk(p.disk, p.path, clientAccess(ctx)),
  }),
  'disk.remove': method({
    params: { disk: string, deleteSnapshots: optional(boolean), discardWrites: optional(boolean) },
    run: (ctx, p) => ctx.engine.removeDisk(p.disk, {
      ...(p.deleteSnapshots === undefined ? {} : { deleteSnapshots: p.deleteSnapshots }),
      ...(p.discardWrites === undefined ? {} : { discardWrites: p.discardWrites }),
    }),
  }),

  'snapshot.create': method({
    params: { disk: string, name: optional(objectName), description: optional(text), wait },
    run: (ctx, p) => {
      const o: { name?: string; description?: string } = {};
      if (p.name !== undefined) o.name = p.name;
      if (p.description !== undefined) o.description = p.description;
      return settle(ctx, ctx.engine.startSnapshot(p.disk, o), p.wait);
    },
  }),
  'snapshot.list': method({
    params: { disk: optional(string), tags: optional(stringMap) },
    run: (ctx, p) => ctx.engine.listSnapshots(p.disk).filter((s) => p.tags === undefined || matchesTags(s.tags, p.tags)),
  }),
  'snapshot.show': method({ params: { snapshot: string }, run: (ctx, p) => ctx.engine.getSnapshot(p.snapshot) }),
  'snapshot.delete': method({ params: { snapshot: string }, run: (ctx, p) => ctx.engine.deleteSnapshot(p.snapshot) }),

  rollback: method({
    params: { disk: string, snapshot: optional(string), force: optional(boolean), abandon: optional(boolean), wait },
    run: (ctx, p) => {
      // Abandoning starts no job: it clears the journal of one that did not finish.
      if (p.abandon === true) {
        if (p.force !== undefined) throw new BlocksnapError('InvalidArgument', 'params.force does not go with params.abandon, which writes nothing', { param: 'force' });
        return ctx.engine.abandonRollback(p.disk, p.snapshot);
      }
      if (p.snapshot === undefined) throw new BlocksnapError('InvalidArgument', 'params.snapshot must be a string (it may be left out only with abandon)', { param: 'snapshot' });
      return settle(ctx, ctx.engine.startRollback(p.disk, p.snapshot, p.force === undefined ? {} : { force: p.force }), p.wait);
    },
  }),
  clone: method({
    params: { snapshot: string, path: absolutePath, format, wait },
    run: (ctx, p) => settle(ctx, ctx.engine.startClone(p.snapshot, p.path, withUser(ctx, p.format === undefined ? {} : { format: p.format })), p.wait),
  }),

  'clone.cow': method({
    params: { snapshot: string, name: objectName },
    run: (ctx, p) => ctx.engine.cloneCow(p.snapshot, p.name),
  }),
  'disk.flatten': method({
    params: { disk: string, path: absolutePath, format, wait },
    run: (ctx, p) => settle(ctx, ctx.engine.startFlatten(p.disk, p.path, withUser(ctx, p.format === undefined ? {} : { format: p.format })), p.wait),
  }),

  'chain.list': method({ params: { disk: optional(string) }, run: (ctx, p) => ctx.engine.listChains(p.disk) }),
  'store.stats': method({ params: {}, run: (ctx) => ctx.engine.storeStats() }),
  'store.gc': method({ params: { wait }, run: (ctx, p) => settle(ctx, ctx.engine.startGc(), p.wait) }),
  'store.verify': method({ params: { wait }, run: (ctx, p) => settle(ctx, ctx.engine.startVerify(), p.wait) }),
  'catalog.backup': method({
    params: { path: absolutePath },
    run: (ctx, p) => {
      requireDaemonUser(ctx, 'back up the catalog', 'the copy holds every disk\'s path, names and remotes, written with the daemon\'s rights');
      return ctx.engine.backupCatalog(p.path);
    },
  }),
  'catalog.accept': method({
    params: {},
    run: (ctx) => {
      requireDaemonUser(ctx, 'accept the catalog as the block store\'s', 'store gc then deletes every block it does not reference');
      return ctx.engine.acceptCatalog();
    },
  }),

  ...offsiteMethods(method, settle),
  ...modelMethods(method, settle),
  ...exportMethods(method),

  'job.list': method({ params: {}, run: (ctx) => ctx.engine.listJobs() }),
  'job.show': method({ params: { job: key }, run: (ctx, p) => ctx.engine.getJob(p.job) }),
  'job.cancel': method({ params: { job: key }, run: (ctx, p) => ctx.engine.cancelJob(p.job) }),
  'job.wait': method({
    params: { job: key },
    run: (ctx, p) => settle(ctx, ctx.engine.getJob(p.job), true),
  }),
  'job.watch': method({
    params: { job: key },
    run: (ctx, p) => {
      const job = ctx.engine.getJob(p.job);
      // Subscribing to a finished job would leave a subscription no event will ever end.
      if (job.state === 'running') ctx.watch(job.id);
      return job;
    },
  }),
};

export function lookupMethod(name: string): Method | undefined {
  return Object.prototype.hasOwnProperty.call(METHODS, name) ? METHODS[name] : undefined;
}
