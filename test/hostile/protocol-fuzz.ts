/**
 * Protocol fuzzing against the real daemon. Each session is one connection that sends a burst of
 * hostile frames: raw garbage, truncated frames, oversized and lying length prefixes, valid
 * msgpack of every shape (deep nesting, huge strings, binaries, extension types), and real
 * requests with every field replaced by a wrong type or an extreme value, or with bytes flipped.
 *
 * Checked throughout: the daemon never exits; every error it answers carries a registered code;
 * a client connected before the storm (and a fresh one after every few sessions) is served
 * within a deadline; the daemon's RSS stays under a bound.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { DaemonClient } from '../../src/daemon/client';
import { METHODS } from '../../src/daemon/methods';
import { FrameDecoder, frame } from '../../src/daemon/protocol/frame';
import { decodeMessage, PROTOCOL_VERSION } from '../../src/daemon/protocol/messages';
import { isErrorCode } from '../../src/errors';
import type { Job } from '../../src/engine/types';
import { makeImage, pattern, writeAt } from '../helpers/images';
import { Random } from '../helpers/random';
import { DaemonProcess, connect, makeLayout, sleep } from '../crash/daemon-process';

export interface FuzzOptions {
  frames: number;
  dir: string;
  seed: number;
  /** Largest RSS the daemon may reach. */
  maxRssBytes?: number;
  log?: (line: string) => void;
}

export interface FuzzStats {
  seed: number;
  frames: number;
  sessions: number;
  responses: number;
  /** Error codes answered, with counts. */
  codes: Record<string, number>;
  closedByDaemon: number;
  bystanderCalls: number;
  rssStartBytes: number;
  rssMaxBytes: number;
  rssEndBytes: number;
}

export class FuzzFailure extends Error {}

const METHOD_NAMES = Object.keys(METHODS);
const packr = new Packr({ useRecords: false, variableMapSize: true });
const BLOCK = 64 * 1024;

/** Values that break naive code: wrong types, extremes, hostile paths. */
function nasty(rng: Random, root: string): unknown {
  const pick = rng.int(0, 27);
  switch (pick) {
    case 0: return null;
    case 1: return true;
    case 2: return -1;
    case 3: return 2 ** 53 + 2;
    case 4: return -(2 ** 63);
    case 5: return Number.NaN;
    case 6: return Infinity;
    case 7: return 1.5;
    case 8: return '';
    case 9: return 'x'.repeat(rng.int(1000, 200_000));
    case 10: return '\u0000';
    case 11: return '../../../../etc/shadow';
    case 12: return '/etc/shadow';
    case 13: return '/dev/zero';
    case 14: return '/proc/self/mem';
    case 15: return join(root, '..', '..', 'etc', 'passwd');
    case 16: return join(root, 'vm.img');
    case 17: return join(root, 'fuzz-clone-' + rng.int(0, 1e9) + '.img');
    case 18: return Buffer.alloc(rng.int(0, 4096), 0xff);
    case 19: return [];
    case 20: return {};
    case 21: return { __proto__: { polluted: true }, constructor: 'x' };
    case 22: return rng.pick(['vm', 'd-0000000000000000', 's-0000000000000000', 'j-0000000000000000', 'base', 'auto-x']);
    case 23: return deepArray(rng.int(10, 300)); // deeper nesting is sent as raw bytes (deepPayload)
    case 24: return new Date(rng.int(-1e15, 1e15));
    case 25: return rng.pick(METHOD_NAMES);
    case 26: return String.fromCharCode(...Array.from({ length: 50 }, () => rng.int(0, 0xffff)));
    default: return rng.int(-1e9, 1e9);
  }
}

function deepArray(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** A payload of deep nesting written byte by byte: no encoder recursion on our side. */
function deepPayload(rng: Random): Buffer {
  const depth = rng.int(1000, 200_000);
  const head = rng.chance(0.5) ? 0x91 : 0x81; // fixarray(1) / fixmap(1)
  const parts = [Buffer.alloc(depth, head)];
  if (head === 0x81) {
    // a map needs key and value per level: key nil, value = the next level
    const b = Buffer.alloc(depth * 2);
    for (let i = 0; i < depth; i++) { b[2 * i] = 0x81; b[2 * i + 1] = 0xc0; }
    parts[0] = b;
  }
  parts.push(Buffer.from([0xc0]));
  return Buffer.concat(parts);
}

function request(rng: Random, root: string): Record<string, unknown> {
  const method = rng.chance(0.9) ? rng.pick(METHOD_NAMES) : (nasty(rng, root) as string);
  const spec = METHODS[method as string];
  const params: Record<string, unknown> = {};
  const keys = spec ? Object.keys(spec.params) : ['disk', 'snapshot', 'path'];
  for (const k of keys) if (rng.chance(0.7)) params[k] = rng.chance(0.5) ? nasty(rng, root) : saneValue(k, rng, root);
  if (rng.chance(0.2)) params[String(nasty(rng, root)).slice(0, 50)] = nasty(rng, root);
  const msg: Record<string, unknown> = { id: rng.chance(0.85) ? rng.int(1, 1e6) : nasty(rng, root), method, params };
  if (rng.chance(0.1)) msg.params = nasty(rng, root);
  if (rng.chance(0.05)) delete msg.id;
  if (rng.chance(0.05)) delete msg.method;
  return msg;
}

/** Plausible values, so that mutations also reach past parameter validation into the engine. */
function saneValue(key: string, rng: Random, root: string): unknown {
  switch (key) {
    case 'disk': return 'vm';
    case 'snapshot': return rng.pick(['base', 'second']);
    case 'path': return join(root, `fuzz-${rng.int(0, 1e9)}.img`);
    case 'wait': return rng.chance(0.5);
    case 'protocol': return PROTOCOL_VERSION;
    case 'name': return `n${rng.int(0, 1e6)}`;
    case 'format': return rng.pick(['raw', 'qcow2', 'vmdk']);
    default: return 'x';
  }
}

function header(n: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(n >>> 0);
  return h;
}

/** A frame that decodes to a map: the daemon must answer it and keep the connection. */
export function envelopeFrame(rng: Random, root: string): Buffer {
  return frame(packr.pack(request(rng, root)));
}

/** Bytes after which the stream cannot be trusted: the daemon must answer or close, and live on. */
export function breakingFrame(rng: Random, root: string): Buffer {
  switch (rng.int(0, 9)) {
    case 0: return rng.bytes(rng.int(1, 256)); // not framed at all
    case 1: return frame(rng.bytes(rng.int(1, 2048))); // framed garbage
    case 2: return Buffer.concat([header(rng.int(1024 * 1024 + 1, 0xffffffff)), rng.bytes(rng.int(0, 64))]); // oversized prefix
    case 3: { // truncated: the prefix promises more than will ever come
      const payload = packr.pack(request(rng, root));
      return Buffer.concat([header(payload.length + rng.int(1, 1000)), payload]);
    }
    case 4: return frame(Buffer.alloc(0));
    case 5: return frame(deepPayload(rng));
    case 6: return frame(packr.pack(nasty(rng, root))); // a value that is not a map
    case 7: { // a real request with flipped bytes
      const payload = Buffer.from(packr.pack(request(rng, root)));
      for (let n = rng.int(1, 4); n > 0; n--) payload[rng.int(0, payload.length - 1)] ^= 1 << rng.int(0, 7);
      return frame(payload);
    }
    case 8: // msgpack extension and reserved types
      return frame(Buffer.from(rng.pick([[0xc1], [0xd4, 0x01, 0x00], [0xc7, 0x05, 0xff, 0, 0, 0, 0, 0], [0xd6, 0xff, 0, 0, 0, 1], [0xdb, 0xff, 0xff, 0xff, 0xff]])));
    default:
      return frame(packr.pack({ id: rng.int(1, 1e6), method: 'hello', params: { protocol: nasty(rng, root), client: nasty(rng, root) } }));
  }
}

interface SessionResult { frames: number; responses: Array<Record<string, unknown>>; closedByDaemon: boolean }

function write(socket: Socket, bytes: Buffer, rng: Random): void {
  // Split writes at random points: the decoder must reassemble across chunks.
  if (rng.chance(0.3) && bytes.length > 2) {
    const cut = rng.int(1, bytes.length - 1);
    socket.write(bytes.subarray(0, cut));
    socket.write(bytes.subarray(cut));
  } else {
    socket.write(bytes);
  }
}

/**
 * One connection: usually hello, then a burst of hostile requests the daemon must each answer,
 * and often one frame that breaks the stream. Waits for every answer or the daemon's close.
 */
async function session(socketPath: string, rng: Random, root: string): Promise<SessionResult> {
  const socket: Socket = netConnect(socketPath);
  const decoder = new FrameDecoder(64 * 1024 * 1024);
  const responses: Array<Record<string, unknown>> = [];
  let closed = false;
  let wake: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    for (const p of decoder.push(chunk)) responses.push(decodeMessage(p) as Record<string, unknown>);
    wake?.();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => { closed = true; wake?.(); });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let frames = 0;
  let answers = 0;
  if (rng.chance(0.9)) {
    socket.write(frame(packr.pack({ id: 0, method: 'hello', params: { protocol: PROTOCOL_VERSION } })));
    answers++;
  }
  for (let n = rng.int(0, 60); n > 0; n--) {
    write(socket, envelopeFrame(rng, root), rng);
    frames++;
    answers++;
  }
  if (rng.chance(0.5)) {
    write(socket, breakingFrame(rng, root), rng);
    frames++;
  }
  const deadline = Date.now() + 3000;
  while (!closed && responses.filter((m) => !('event' in m)).length < answers && Date.now() < deadline) {
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, 50);
    });
  }
  const closedByDaemon = closed;
  socket.destroy();
  return { frames, responses, closedByDaemon };
}

export async function runProtocolFuzz(o: FuzzOptions): Promise<FuzzStats> {
  const rng = new Random(o.seed);
  const layout = makeLayout(o.dir);
  const image = join(layout.imageRoot, 'vm.img');
  makeImage(image, 8 * BLOCK);
  writeAt(image, 0, pattern('fuzz', 2 * BLOCK));
  const daemon = await DaemonProcess.start(layout);
  const maxRss = o.maxRssBytes ?? 512 * 1024 * 1024;
  const stats: FuzzStats = {
    seed: o.seed, frames: 0, sessions: 0, responses: 0, codes: {}, closedByDaemon: 0, bystanderCalls: 0,
    rssStartBytes: 0, rssMaxBytes: 0, rssEndBytes: 0,
  };
  const fail = (message: string): never => {
    throw new FuzzFailure(`protocol fuzz (seed ${o.seed}, ${stats.frames} frames): ${message}\n--- daemon log tail ---\n${daemon.stderr().slice(-3000)}`);
  };
  let bystander: DaemonClient | undefined;
  try {
    const setup = await connect(layout);
    await setup.call('disk.add', { path: image, name: 'vm' });
    await setup.call<Job>('snapshot.create', { disk: 'vm', name: 'base', wait: true });
    setup.close();
    bystander = await connect(layout);
    stats.rssStartBytes = daemon.rssBytes();
    let lastLog = 0;
    const parallel = 4;
    while (stats.frames < o.frames) {
      const results = await Promise.all(Array.from({ length: parallel }, () => session(layout.socketPath, rng, layout.imageRoot)));
      for (const r of results) {
        stats.sessions++;
        stats.frames += r.frames;
        if (r.closedByDaemon) stats.closedByDaemon++;
        for (const m of r.responses) {
          stats.responses++;
          const err = m.error as { code?: unknown } | undefined;
          if (err === undefined) continue;
          const code = err.code;
          if (!isErrorCode(code)) fail(`an error with an unregistered code: ${JSON.stringify(m).slice(0, 500)}`);
          else stats.codes[code] = (stats.codes[code] ?? 0) + 1;
        }
      }
      if (!daemon.alive) fail('the daemon exited');
      if (stats.sessions % 40 < parallel) {
        await served(bystander, fail);
        const fresh = await connect(layout).catch((e: Error) => fail(`a new client cannot connect: ${e.message}`));
        await served(fresh, fail);
        fresh.close();
        stats.bystanderCalls += 2;
        const rss = daemon.rssBytes();
        stats.rssMaxBytes = Math.max(stats.rssMaxBytes, rss);
        if (rss > maxRss) fail(`daemon RSS ${rss} exceeds ${maxRss}`);
      }
      if (o.log && stats.frames - lastLog >= 10_000) {
        lastLog = stats.frames;
        o.log(`${stats.frames} frames, ${stats.sessions} sessions, rss ${(daemon.rssBytes() / 1048576).toFixed(0)} MiB`);
      }
    }
    await served(bystander, fail);
    stats.bystanderCalls++;
    // Jobs the fuzz started (clones, gc, snapshots) may still run; the catalog must stay sound.
    await sleep(200);
    const verify = await bystander.call<Job>('store.verify', { wait: true });
    if (verify.state !== 'succeeded' || (verify.result as { problems: unknown[] }).problems.length > 0) {
      fail(`store verify after the fuzz: ${JSON.stringify(verify.result ?? verify.error)}`);
    }
    stats.rssEndBytes = daemon.rssBytes();
    stats.rssMaxBytes = Math.max(stats.rssMaxBytes, stats.rssEndBytes);
    bystander.close();
    const code = await daemon.stop();
    if (code !== 0) fail(`the daemon exited ${code} on SIGTERM after the fuzz`);
    return stats;
  } finally {
    bystander?.close();
    await daemon.kill();
  }
}

async function served(c: DaemonClient, fail: (m: string) => never): Promise<void> {
  const timeout = sleep(10_000).then(() => 'timeout' as const);
  const r = await Promise.race([c.call('disk.list').then(() => 'ok' as const, (e: Error) => e.message), timeout]);
  if (r !== 'ok') fail(`a well-behaved client was not served: ${r}`);
}
