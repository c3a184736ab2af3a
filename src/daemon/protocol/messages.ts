/**
 * Message shapes and their msgpack codec. Requests carry an id chosen by the client; the daemon
 * echoes it in the response so a client can have many calls in flight on one connection. Events
 * carry no id: they are pushed for jobs the connection subscribed to.
 *
 * msgpack is used in its plain form (no msgpackr records or other extensions) so that a client in
 * any language with a msgpack library can speak the protocol.
 */
import { Packr, Unpackr } from 'msgpackr';
import { BlocksnapError } from '../../errors';
import type { Job } from '../../engine/types';

/** Bumped only for incompatible changes; adding methods, params or result fields is compatible. */
export const PROTOCOL_VERSION = 1;

export type RequestId = number | string;
export const MAX_REQUEST_ID_LENGTH = 128;

export type Params = Record<string, unknown>;

export interface Request {
  id: RequestId;
  method: string;
  params: Params;
}

export interface ErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface ResultResponse {
  id: RequestId;
  result: unknown;
}

/** `id` is null when the request was too broken to recover its id. */
export interface ErrorResponse {
  id: RequestId | null;
  error: ErrorBody;
}

export type Response = ResultResponse | ErrorResponse;

export interface ProgressEvent {
  event: 'progress';
  jobId: string;
  job: Job;
}

/** A chunk of a snapshot stream going to the client (docs/protocol.md, *Streams*). */
export interface DataEvent {
  event: 'data';
  stream: string;
  seq: number;
  data: Buffer;
}

export type ServerMessage = Response | ProgressEvent | DataEvent;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeMessage(message: object): Buffer {
  return packr.pack(message);
}

/** Decodes one frame payload. Anything that is not exactly one msgpack value is a ProtocolError. */
export function decodeMessage(payload: Buffer): unknown {
  if (payload.length === 0) throw new BlocksnapError('ProtocolError', 'empty frame: a frame must hold one msgpack map');
  let value: unknown;
  try {
    value = unpackr.unpack(payload);
  } catch (err) {
    throw new BlocksnapError('ProtocolError', `undecodable frame: ${(err as Error).message}`);
  }
  return value;
}

/** True for the objects msgpack maps decode to, false for arrays, buffers, dates and extension values. */
export function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isRequestId(value: unknown): value is RequestId {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0;
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_REQUEST_ID_LENGTH;
}

/**
 * Checks the envelope of a decoded request. Throws a ProtocolError; when the id itself was valid it
 * is kept in `details.id` so the error response can still be matched to the call.
 */
export function parseRequest(value: unknown): Request {
  if (!isPlainMap(value)) {
    throw new BlocksnapError('ProtocolError', `a request must be a msgpack map, got ${describeType(value)}`);
  }
  const id = value.id;
  if (!isRequestId(id)) {
    throw new BlocksnapError(
      'ProtocolError',
      `request.id must be a non-negative integer or a string of 1 to ${MAX_REQUEST_ID_LENGTH} characters`,
    );
  }
  const method = value.method;
  if (typeof method !== 'string' || method.length === 0) {
    throw new BlocksnapError('ProtocolError', 'request.method must be a non-empty string', { id });
  }
  const params = value.params ?? {};
  if (!isPlainMap(params)) {
    throw new BlocksnapError('InvalidArgument', `params must be a map, got ${describeType(params)}`, { id });
  }
  for (const key of Object.keys(value)) {
    if (key !== 'id' && key !== 'method' && key !== 'params') {
      throw new BlocksnapError('ProtocolError', `request.${key} must be absent (a request has id, method and params)`, { id });
    }
  }
  return { id, method, params };
}

/** The name of a decoded value's type, for error messages that must not echo the value itself. */
export function describeType(value: unknown): string {
  if (value === null) return 'nil';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return 'binary data';
  if (value instanceof Date) return 'a timestamp';
  if (typeof value === 'object') return isPlainMap(value) ? 'a map' : 'an extension value';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a float';
  if (typeof value === 'bigint') return 'a 64-bit integer';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'boolean') return 'a boolean';
  return typeof value;
}
