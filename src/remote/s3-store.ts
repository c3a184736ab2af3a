/**
 * ObjectStore over the S3 API (AWS SDK v3), for every S3-compatible service. Settings that make
 * it work beyond AWS: path-style addressing (radosgw and MinIO on a bare host name), and
 * checksums only where an operation requires them, because Pacific-era radosgw rejects the
 * aws-chunked trailers that the SDK's default checksum mode sends. Bodies are whole Buffers with a
 * known length (one block at most), so no streaming upload is involved.
 *
 * The SDK's own retries are off (maxAttempts 1): retry.ts retries here, so every attempt and
 * backoff is visible and counted, and the kind of failure decides whether to retry at all.
 */
import {
  DeleteObjectCommand, DeleteObjectsCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { BlocksnapError } from '../errors';
import type { Credentials, RemoteConfig } from './config';
import type { ObjectInfo, ObjectStore, PutOptions } from './object-store';
import { DEFAULT_RETRY, Transient, withRetry, type RetryPolicy } from './retry';

// The daemon's stderr is its log; the SDK's notice about future Node.js versions is not a daemon event.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** The SDK's logger interface for its HTTP handler, reporting warnings and errors to `log` (nothing without one). */
function sdkLogger(remote: string, log: S3Log | undefined): { debug(): void; info(): void; warn(...a: unknown[]): void; error(...a: unknown[]): void } {
  const one = (x: unknown): string => {
    if (typeof x === 'string') return x;
    if (x instanceof Error) return x.message;
    try {
      return JSON.stringify(x) ?? String(x);
    } catch {
      return String(x); // circular: a log line must not fail the request that wrote it
    }
  };
  const text = (a: unknown[]): string => a.map(one).join(' ');
  return {
    debug() {},
    info() {},
    warn: (...a) => log?.warn({ remote, sdk: true }, text(a)),
    error: (...a) => log?.error({ remote, sdk: true }, text(a)),
  };
}

/**
 * A response body read whole, or abandoned as soon as `attempt` aborts: the stream is destroyed,
 * which frees its connection, instead of waiting for the rest to trickle in.
 */
async function readBody(body: { transformToByteArray(): Promise<Uint8Array> }, attempt: AbortSignal): Promise<Uint8Array> {
  const stream = body as unknown as { destroy?(err: Error): void };
  const abandon = (): void => stream.destroy?.(new Error('the body read was abandoned'));
  attempt.addEventListener('abort', abandon, { once: true });
  try {
    if (attempt.aborted) abandon();
    return await body.transformToByteArray();
  } finally {
    attempt.removeEventListener('abort', abandon);
  }
}

const DELETE_BATCH = 1000; // the S3 API's limit per DeleteObjects request

/**
 * How long one attempt may take before it is abandoned (and retried, as any failure to get an
 * answer is). A storage that hangs with its connections open (a stopped gateway, a wedged OSD)
 * sends nothing at all, and without these a request waits for it forever.
 */
export interface S3Timeouts {
  /** To establish a TCP connection. */
  connectMs: number;
  /** Without a byte sent or received on the connection. */
  idleMs: number;
  /**
   * For one attempt, a response body's read included: a trickle that keeps the idle timer quiet
   * still ends.
   */
  requestMs: number;
}

/** The whole-request limit lets a block of the largest size (64 MiB) through a 1 Mbit/s link. */
export const DEFAULT_S3_TIMEOUTS: S3Timeouts = { connectMs: 5000, idleMs: 30_000, requestMs: 600_000 };

/** Where the SDK's own warnings go: the daemon's log, not a plain line on its stderr. */
export interface S3Log {
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface S3StoreOptions {
  retry?: RetryPolicy;
  timeouts?: S3Timeouts;
  log?: S3Log;
  /** Called on every retry (the job counts them). */
  onRetry?: () => void;
}

const AUTH_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'Forbidden']);
/** Refusals of a body that does not hash to its signed payload hash (AWS S3, radosgw, MinIO). */
const PAYLOAD_MISMATCH_CODES = new Set(['XAmzContentSHA256Mismatch', 'BadDigest']);

export class S3Store implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly retry: RetryPolicy;
  private readonly timeouts: S3Timeouts;

  constructor(private readonly remote: RemoteConfig, credentials: Credentials, private readonly o: S3StoreOptions = {}) {
    this.description = `${remote.endpoint}/${remote.bucket}${remote.prefix ? `/${remote.prefix}` : ''}`;
    this.retry = o.retry ?? DEFAULT_RETRY;
    const timeouts = this.timeouts = o.timeouts ?? DEFAULT_S3_TIMEOUTS;
    const sdkLog = sdkLogger(remote.name, o.log);
    const config: S3ClientConfig = {
      endpoint: remote.endpoint,
      region: remote.region,
      forcePathStyle: true,
      credentials,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // The HTTP handler's warnings only: a client-level logger would log every failed command
      // with its input, a block's body included.
      // Without throwOnRequestTimeout the SDK only logs that requestTimeout passed and goes on waiting.
      requestHandler: {
        connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs, requestTimeout: timeouts.requestMs, throwOnRequestTimeout: true, logger: sdkLog,
      },
    };
    this.client = new S3Client(config);
  }

  close(): void {
    this.client.destroy();
  }

  /**
   * One call, retried by retry.ts. `fn` gets the attempt's signal: the job's, joined with the
   * whole-attempt limit. The SDK's requestTimeout stops counting once the response headers are
   * in, so only this limit bounds a body that trickles in.
   */
  private run<T>(what: string, key: string, fn: (attempt: AbortSignal) => Promise<T>, signal?: AbortSignal, sha256?: string): Promise<T> {
    const opts: { policy: RetryPolicy; signal?: AbortSignal; onRetry?: () => void } = { policy: this.retry };
    if (signal) opts.signal = signal;
    if (this.o.onRetry) opts.onRetry = this.o.onRetry;
    return withRetry(async () => {
      const attempt = new AbortController();
      const limit = setTimeout(() => attempt.abort(new Error(this.overTime())), this.timeouts.requestMs);
      // A listener, not AbortSignal.any: a job's signal lives for millions of attempts.
      const cancel = (): void => attempt.abort(signal?.reason);
      signal?.addEventListener('abort', cancel, { once: true });
      if (signal?.aborted) cancel();
      try {
        return await fn(attempt.signal);
      } catch (err) {
        throw this.classify(err, what, key, signal, sha256, attempt.signal.aborted);
      } finally {
        clearTimeout(limit);
        signal?.removeEventListener('abort', cancel);
      }
    }, opts);
  }

  /**
   * Maps an SDK failure to a final BlocksnapError, wrapped in Transient when a retry may cure it.
   * `sha256`: the payload hash a PUT was signed with, so that a refused body is a DigestMismatch.
   * `overTime`: the whole-attempt limit ended it.
   */
  private classify(err: unknown, what: string, key: string, signal?: AbortSignal, sha256?: string, overTime = false): Error {
    if (signal?.aborted) return new BlocksnapError('Cancelled', `${what} cancelled`);
    const e = err as { name?: string; code?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    const code = e.Code ?? e.name ?? e.code ?? 'Error';
    const where = `${what} ${this.description}: ${key}`;
    if (status === undefined || overTime) {
      // No whole HTTP answer: refused, reset, DNS, a timeout. Worth retrying; unreachable in the end.
      const why = overTime ? this.overTime() : e.name === 'TimeoutError' ? this.timedOut(e.message ?? '') : e.code ?? e.name ?? e.message ?? 'no answer';
      return new Transient(new BlocksnapError('RemoteUnreachable', `${where}: cannot reach ${this.remote.endpoint} (${why})`, { remote: this.remote.name }));
    }
    if (status === 403 || AUTH_CODES.has(code)) {
      return new BlocksnapError('RemoteAuthFailed', `${where}: the remote refused the credentials of ${this.remote.credentialsFile} (${status} ${code})`, { remote: this.remote.name });
    }
    if (sha256 !== undefined && status === 400 && PAYLOAD_MISMATCH_CODES.has(code)) {
      return new BlocksnapError('DigestMismatch', `${where}: the remote refused the body: it does not hash to ${sha256} (${status} ${code})`, { remote: this.remote.name, digest: sha256 });
    }
    if (code === 'NoSuchBucket') return new BlocksnapError('RemoteBucketMissing', `bucket ${this.remote.bucket} does not exist at ${this.remote.endpoint}`, { remote: this.remote.name });
    const final = new BlocksnapError('RemoteError', `${where}: ${status} ${code}${e.message && e.message !== code ? `: ${e.message}` : ''}`, { remote: this.remote.name, status });
    if (status >= 500 || status === 429 || code === 'SlowDown' || code === 'RequestTimeout') return new Transient(final);
    return final;
  }

  /** Why an attempt that the whole-attempt limit (the SDK's, or run's own) ended failed. */
  private overTime(): string {
    return `no whole answer within ${this.timeouts.requestMs} ms`;
  }

  /** Which of the timeouts ended an attempt, from the SDK's message (its error has no other mark). */
  private timedOut(message: string): string {
    const t = this.timeouts;
    if (message.includes('establish a connection')) return `no connection within ${t.connectMs} ms`;
    if (message.includes('inactivity')) return `nothing received for ${t.idleMs} ms`;
    if (message.includes('requestTimeout')) return this.overTime();
    return `timed out: ${message}`;
  }

  async put(key: string, body: Buffer, signal?: AbortSignal, o: PutOptions = {}): Promise<void> {
    await this.run('PUT', key, (attempt) => {
      const cmd = new PutObjectCommand({ Bucket: this.remote.bucket, Key: key, Body: body, ContentLength: body.length });
      const sha256 = o.sha256;
      if (sha256 !== undefined) {
        // SigV4 signs the payload hash given in this header instead of hashing the body itself (on
        // the event loop), and the store checks the body against it.
        cmd.middlewareStack.add((next) => async (args) => {
          (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = sha256;
          return next(args);
        }, { step: 'build', name: 'blocksnapPayloadSha256' });
      }
      return this.client.send(cmd, { abortSignal: attempt });
    }, signal, o.sha256);
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer | null> {
    return this.run('GET', key, async (attempt) => {
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.remote.bucket, Key: key }), { abortSignal: attempt });
        const bytes = await readBody(res.Body!, attempt);
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchKey') return null;
        throw err;
      }
    }, signal);
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    return this.run('HEAD', key, async (attempt) => {
      try {
        const res = await this.client.send(new HeadObjectCommand({ Bucket: this.remote.bucket, Key: key }), { abortSignal: attempt });
        return { key, size: res.ContentLength ?? 0, lastModified: res.LastModified ?? new Date(0) };
      } catch (err) {
        // A HEAD answer has no body, so a missing bucket reads as a missing key here; puts say which.
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
        throw err;
      }
    }, signal);
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo> {
    let token: string | undefined;
    do {
      const page = await this.run('LIST', prefix, (attempt) => this.client.send(new ListObjectsV2Command({
        Bucket: this.remote.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}),
      }), { abortSignal: attempt }), signal);
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
      if (page.IsTruncated && !page.NextContinuationToken) {
        // Ending here would pass a partial listing off as whole: gc would mark from it.
        throw new BlocksnapError('RemoteError', `LIST ${this.description}: ${prefix}: the remote says the listing is truncated but gives no continuation token`, { remote: this.remote.name });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async listPage(prefix: string, startAfter: string, signal?: AbortSignal): Promise<{ objects: ObjectInfo[]; more: boolean }> {
    const page = await this.run('LIST', prefix, (attempt) => this.client.send(new ListObjectsV2Command({
      Bucket: this.remote.bucket, Prefix: prefix, StartAfter: startAfter,
    }), { abortSignal: attempt }), signal);
    const objects = (page.Contents ?? []).filter((o) => o.Key).map((o) => ({ key: o.Key!, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) }));
    return { objects, more: page.IsTruncated === true };
  }

  async deleteMany(keys: string[], signal?: AbortSignal): Promise<void> {
    if (keys.length === 1) {
      // One key (a lease): DeleteObject answers 204 without a body, where DeleteObjects answers
      // with XML, which a radosgw without tcp_nodelay holds back ~40 ms behind its headers.
      await this.run('DELETE', keys[0]!, (attempt) => this.client.send(new DeleteObjectCommand({ Bucket: this.remote.bucket, Key: keys[0]! }), { abortSignal: attempt }), signal);
      return;
    }
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const res = await this.run('DELETE', batch[0]!, (attempt) => this.client.send(new DeleteObjectsCommand({
        Bucket: this.remote.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }), { abortSignal: attempt }), signal);
      const failed = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        throw new BlocksnapError('RemoteError', `DELETE ${this.description}: ${failed.length} object(s) not deleted, first ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`, { remote: this.remote.name });
      }
    }
  }

  async check(probeKey: string): Promise<{ latencyMs: number }> {
    const started = process.hrtime.bigint();
    const body = Buffer.from(`blocksnap remote check ${new Date().toISOString()}\n`);
    await this.put(probeKey, body);
    const back = await this.get(probeKey);
    await this.deleteMany([probeKey]);
    if (!back || !back.equals(body)) throw new BlocksnapError('RemoteError', `${this.description}: a probe object read back differently from what was written`, { remote: this.remote.name });
    return { latencyMs: Number(process.hrtime.bigint() - started) / 1e6 };
  }
}
