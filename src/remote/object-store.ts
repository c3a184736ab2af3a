/**
 * What replication needs from an object store: whole-object put/get, existence, listing and
 * batched delete. S3Store implements it for every S3-compatible service; the contract below is
 * what replication.ts and remote-gc.ts rely on.
 *
 * - put(key, body) is atomic: a reader sees the whole new object or none (S3 semantics), and a
 *   completed put is visible to every later get, head and list (strong read-after-write, which
 *   AWS S3 and a single-site radosgw give).
 * - get of a missing key resolves null; head of a missing key resolves null.
 * - list yields every key under the prefix once, with its size and last-modified time.
 * - deleteMany of a missing key is not an error.
 * - Failures are BlocksnapError with a Remote* code; transient ones were already retried.
 */
export interface ObjectInfo { key: string; size: number; lastModified: Date }

export interface PutOptions {
  /**
   * The body's SHA-256 in hex, when the caller knows it (a block's digest is its key): the store
   * then checks the body against it on arrival, and the client need not hash the body again. A
   * body that does not match is refused with DigestMismatch (details.digest).
   */
  sha256?: string;
}

export interface ObjectStore {
  readonly description: string;
  put(key: string, body: Buffer, signal?: AbortSignal, o?: PutOptions): Promise<void>;
  get(key: string, signal?: AbortSignal): Promise<Buffer | null>;
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null>;
  list(prefix: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo>;
  /** One page of `list` in key order, starting after `startAfter` (exclusive); `more` when the listing goes on. */
  listPage(prefix: string, startAfter: string, signal?: AbortSignal): Promise<{ objects: ObjectInfo[]; more: boolean }>;
  deleteMany(keys: string[], signal?: AbortSignal): Promise<void>;
  /** Writes, reads back and deletes a small probe object: proves reachability, credentials and write access. */
  check(probeKey: string): Promise<{ latencyMs: number }>;
  close(): void;
}
