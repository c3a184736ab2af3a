/**
 * A remote: an S3-compatible bucket (Ceph radosgw, AWS S3, MinIO, Garage) that holds off-host
 * copies of snapshots under a key prefix. The catalog keeps the settings below; the secrets stay
 * in the credentials file, which the daemon reads each time it connects, so rotating a key is an
 * edit of that file and no secret ever lands in the catalog, a log line or a response.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { dirname, isAbsolute } from 'node:path';
import { BlocksnapError } from '../errors';
import { quotedName } from '../engine/names';

export interface RemoteConfig {
  name: string;
  /** http(s) URL of the S3 endpoint. */
  endpoint: string;
  bucket: string;
  /** Key prefix inside the bucket, no leading or trailing slash; '' for the bucket's root. */
  prefix: string;
  region: string;
  /** Absolute path of the credentials file (mode 0600 or stricter). */
  credentialsFile: string;
  createdAt: string;
}

export interface Credentials { accessKeyId: string; secretAccessKey: string; sessionToken?: string }

export const DEFAULT_REGION = 'us-east-1';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// S3 bucket naming (the DNS-compatible subset every implementation accepts).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_PART = /^[A-Za-z0-9._-]+$/;
const REGION = /^[a-z0-9-]{1,32}$/;
const CREDENTIALS_MAX_BYTES = 64 * 1024;

export function validateRemoteName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new BlocksnapError('InvalidName', `remote name ${quotedName(name, 64)} must be 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit`);
  }
  return name;
}

export function validateEndpoint(endpoint: unknown): string {
  let url: URL;
  try {
    url = new URL(String(endpoint));
  } catch {
    throw new BlocksnapError('InvalidArgument', `endpoint ${JSON.stringify(endpoint)} must be an http:// or https:// URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BlocksnapError('InvalidArgument', `endpoint ${JSON.stringify(endpoint)} must be an http:// or https:// URL`);
  }
  if (url.username || url.password) {
    throw new BlocksnapError('InvalidArgument', 'the endpoint URL must not carry credentials; put them in the credentials file');
  }
  if (url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    throw new BlocksnapError('InvalidArgument', `endpoint ${JSON.stringify(endpoint)} must be scheme://host[:port] only (the bucket goes in --bucket, a path in --prefix)`);
  }
  return `${url.protocol}//${url.host}`;
}

export function validateBucket(bucket: unknown): string {
  if (typeof bucket !== 'string' || !BUCKET.test(bucket) || bucket.includes('..')) {
    throw new BlocksnapError('InvalidArgument', `bucket ${JSON.stringify(bucket)} must be 3-63 of a-z 0-9 . -, starting and ending with a letter or digit`);
  }
  return bucket;
}

/** Normalises "a/b/" to "a/b"; every segment must be plain (no "..", no empty segments). */
export function validatePrefix(prefix: unknown): string {
  if (prefix === undefined || prefix === '') return '';
  if (typeof prefix !== 'string' || prefix.length > 256) throw new BlocksnapError('InvalidArgument', 'prefix must be a string of at most 256 characters');
  const parts = prefix.replace(/^\/+|\/+$/g, '').split('/');
  if (parts.some((p) => !PREFIX_PART.test(p) || p === '.' || p === '..')) {
    throw new BlocksnapError('InvalidArgument', `prefix ${JSON.stringify(prefix)} must be /-separated segments of A-Z a-z 0-9 . _ -`);
  }
  return parts.join('/');
}

export function validateRegion(region: unknown): string {
  if (region === undefined) return DEFAULT_REGION;
  if (typeof region !== 'string' || !REGION.test(region)) throw new BlocksnapError('InvalidArgument', `region ${JSON.stringify(region)} must be 1-32 of a-z 0-9 -`);
  return region;
}

/** Linux O_PATH: names the inode without opening it, so no driver's open runs; libuv adds O_CLOEXEC. */
const O_PATH = 0o10000000;

const S_ISVTX = 0o1000;

/**
 * The file is read again at every connection, by its name: a user who may write its directory
 * could put another file there under that name between two reads (one of the daemon's or root's
 * own, with other keys), so the directory must be the daemon's user's or root's, written by no
 * one else. A sticky directory (/tmp) passes: there only a file's owner may rename or remove it.
 */
function checkCredentialsDir(path: string, uid: number): void {
  const dir = dirname(path);
  const st = statSync(dir);
  if (st.uid !== uid && st.uid !== 0) {
    throw new BlocksnapError('CredentialsInsecure', `the directory ${dir} of credentials file ${path} is owned by uid ${st.uid}, not by the daemon's user (${uid}) or root; move the file to a directory of theirs`, { path });
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & S_ISVTX) === 0) {
    throw new BlocksnapError('CredentialsInsecure',
      `the directory ${dir} of credentials file ${path} may be written by ${(st.mode & 0o002) !== 0 ? 'every user' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}), who could put another file under its name (chmod go-w ${dir}, or move the file)`, { path });
  }
}

/**
 * Reads the credentials file. It must be a regular file (not followed through a symlink), owned
 * by the daemon's user or root, and neither group nor others may read or write it: the same rule
 * ssh applies to private keys; its directory must be theirs too (checkCredentialsDir). Accepted syntax: `key = value` lines as in ~/.aws/credentials
 * (`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`; the `aws_` prefix is
 * optional; `[section]` lines and `#`/`;` comments are ignored), or one JSON object
 * `{"accessKeyId", "secretAccessKey", "sessionToken"?}`. Error messages never quote the content.
 *
 * The file is pinned with an O_PATH descriptor and checked before it is opened for reading, and
 * then opened through that descriptor (/proc/self/fd/N), never by its name again: opening a
 * device or a FIFO can act on it (a tape rewinds, a watchdog arms, a FIFO's writer wakes), and a
 * name checked first could be swapped for one before the open.
 */
export function readCredentials(path: string): Credentials {
  if (!isAbsolute(path)) throw new BlocksnapError('InvalidArgument', `credentials file ${JSON.stringify(path)} must be an absolute path`);
  let pinned: number;
  try {
    pinned = openSync(path, O_PATH | constants.O_NOFOLLOW);
  } catch (err) {
    throw new BlocksnapError('CredentialsInvalid', `cannot open credentials file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { path });
  }
  let fd: number;
  try {
    const st = fstatSync(pinned);
    if (st.isSymbolicLink()) throw new BlocksnapError('CredentialsInsecure', `credentials file ${path} is a symlink; name the file itself`, { path });
    if (!st.isFile()) throw new BlocksnapError('CredentialsInsecure', `credentials file ${path} is not a regular file`, { path });
    if ((st.mode & 0o077) !== 0) {
      throw new BlocksnapError('CredentialsInsecure',
        `credentials file ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; group and others must have no access (chmod 600 ${path})`, { path });
    }
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== uid && st.uid !== 0) {
      throw new BlocksnapError('CredentialsInsecure', `credentials file ${path} is owned by uid ${st.uid}, not by the daemon's user (${uid}) or root`, { path });
    }
    checkCredentialsDir(path, uid);
    try {
      fd = openSync(`/proc/self/fd/${pinned}`, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      throw new BlocksnapError('CredentialsInvalid', `cannot open credentials file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { path });
    }
  } finally {
    closeSync(pinned);
  }
  try {
    const st = fstatSync(fd);
    if (st.size > CREDENTIALS_MAX_BYTES) throw new BlocksnapError('CredentialsInvalid', `credentials file ${path} is larger than ${CREDENTIALS_MAX_BYTES} bytes`, { path });
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return parseCredentials(buf.subarray(0, got).toString('utf8'), path);
  } finally {
    closeSync(fd);
  }
}

export function parseCredentials(text: string, path: string): Credentials {
  const values = new Map<string, string>();
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(trimmed);
    } catch {
      throw new BlocksnapError('CredentialsInvalid', `credentials file ${path} starts with "{" but is not valid JSON`, { path });
    }
    if (obj && typeof obj === 'object') {
      for (const [k, v] of Object.entries(obj)) if (typeof v === 'string') values.set(k.toLowerCase().replace(/_/g, ''), v);
    }
  } else {
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
      const eq = line.indexOf('=');
      if (eq <= 0) throw new BlocksnapError('CredentialsInvalid', `credentials file ${path}: a line is neither "key = value", a [section] nor a comment`, { path });
      values.set(line.slice(0, eq).trim().toLowerCase().replace(/^aws_/, '').replace(/_/g, ''), line.slice(eq + 1).trim());
    }
  }
  const accessKeyId = values.get('accesskeyid');
  const secretAccessKey = values.get('secretaccesskey');
  if (!accessKeyId || !secretAccessKey) {
    throw new BlocksnapError('CredentialsInvalid', `credentials file ${path} must set aws_access_key_id and aws_secret_access_key`, { path });
  }
  const sessionToken = values.get('sessiontoken');
  return sessionToken ? { accessKeyId, secretAccessKey, sessionToken } : { accessKeyId, secretAccessKey };
}

