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

/** Deepest nesting of maps and arrays a request may have (the protocol's own requests need 3). */
export const MAX_REQUEST_DEPTH = 32;
/** Most values (map keys count as values) one request may hold; the protocol's lists hold at most 1024 items. */
export const MAX_REQUEST_VALUES = 16_384;

/**
 * Checks that a request payload is plain msgpack before msgpackr sees it. msgpackr also decodes its
 * own extensions (records, which compile a reader function per structure; sets, regexps, errors,
 * typed arrays, arbitrarily large bigints, reference cycles), and recurses once per nesting level:
 * from a client, those are ways to burn the daemon's CPU and memory, not requests. The walk is
 * iterative, so hostile nesting cannot exhaust the stack here. Allowed: nil, booleans, integers,
 * floats, strings, binaries, arrays, maps, and msgpackr's encoding of `undefined` (fixext 1 of
 * type 0, which a msgpackr-based client emits for an undefined param and which counts as absent).
 */
export function checkPlainMsgpack(payload: Uint8Array, maxDepth = MAX_REQUEST_DEPTH, maxValues = MAX_REQUEST_VALUES): void {
  const end = payload.length;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const refuse = (why: string): never => {
    throw new BlocksnapError('ProtocolError', `undecodable frame: ${why}`);
  };
  const extension = (typeAt: number, at: number): never => {
    const type = typeAt < end ? view.getInt8(typeAt) : undefined;
    return refuse(`a msgpack extension${type === undefined ? '' : ` (type ${type})`} at byte ${at}; the protocol is plain msgpack`);
  };
  const need = (at: number, n: number): void => {
    if (n > end - at) refuse('the frame ends inside a value');
  };
  /** Values still to read in each open map or array, innermost last. */
  const open: number[] = [];
  let pos = 0;
  let values = 0;
  for (;;) {
    if (++values > maxValues) refuse(`more than ${maxValues} values`);
    need(pos, 1);
    const at = pos;
    const b = payload[pos++]!;
    let children = 0;
    let skip = 0;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, boolean
    } else if (b <= 0x8f) {
      children = (b & 0x0f) * 2;
    } else if (b <= 0x9f) {
      children = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      switch (b) {
        case 0xc4: case 0xd9: need(pos, 1); skip = payload[pos]!; pos += 1; break;
        case 0xc5: case 0xda: need(pos, 2); skip = view.getUint16(pos); pos += 2; break;
        case 0xc6: case 0xdb: need(pos, 4); skip = view.getUint32(pos); pos += 4; break;
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xdc: need(pos, 2); children = view.getUint16(pos); pos += 2; break;
        case 0xdd: need(pos, 4); children = view.getUint32(pos); pos += 4; break;
        case 0xde: need(pos, 2); children = view.getUint16(pos) * 2; pos += 2; break;
        case 0xdf: need(pos, 4); children = view.getUint32(pos) * 2; pos += 4; break;
        case 0xd4:
          need(pos, 2);
          if (payload[pos] !== 0x00) extension(pos, at);
          skip = 2;
          break;
        case 0xc7: extension(pos + 1, at); break;
        case 0xc8: extension(pos + 2, at); break;
        case 0xc9: extension(pos + 4, at); break;
        case 0xc1: refuse(`the never-used byte 0xc1 at byte ${at}`); break;
        default: extension(pos, at); // fixext 2 to 16 (0xd5-0xd8)
      }
    }
    need(pos, skip);
    pos += skip;
    if (children > 0) {
      // Every value takes at least one byte: a count beyond the bytes left is a lie, refused
      // before anything is allocated for it.
      if (children > end - pos) refuse('the frame ends inside a value');
      if (open.length >= maxDepth) refuse(`nesting deeper than ${maxDepth} levels`);
      open.push(children);
      continue;
    }
    // A value is complete: close every map or array it completes.
    while (open.length > 0 && --open[open.length - 1]! === 0) open.pop();
    if (open.length === 0) break;
  }
  if (pos !== end) refuse(`${end - pos} trailing bytes after the value`);
}

/**
 * Decodes one request frame: plain msgpack only (checkPlainMsgpack), then as decodeMessage. The
 * daemon's answers may use what msgpackr encodes by default, so clients decode with decodeMessage.
 */
export function decodeRequestPayload(payload: Buffer): unknown {
  if (payload.length === 0) throw new BlocksnapError('ProtocolError', 'empty frame: a frame must hold one msgpack map');
  checkPlainMsgpack(payload);
  return decodeMessage(payload);
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
