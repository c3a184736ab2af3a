/** The stream reader and its header checks (src/stream/format.ts, snapshot-fields.ts), without a daemon. */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fileSource, type ByteSink, type ByteSource } from '../../src/stream/byte-io';
import { PREAMBLE_FIXED, STREAM_MAGIC, STREAM_VERSION, StreamReader, StreamWriter, type StreamHeader } from '../../src/stream/format';
import { MAX_BLOCK_COUNT } from '../../src/stream/snapshot-fields';

const B = 4 * 1024 * 1024;

function header(): StreamHeader {
  return {
    snapshot: {
      id: 's-0123456789abcdef', diskId: 'd-0123456789abcdef', diskName: 'vm', name: 'monday', description: 'before the upgrade',
      type: 'manual', parentId: null, createdAt: '2026-01-01T00:00:00.000Z', sizeBytes: 2 * B + 100, blockSize: B, blockCount: 3,
      logicalBytes: B, consistency: 'crash',
    },
    base: null,
    exportedAt: '2026-01-02T00:00:00.000Z',
  };
}

/** A sealed preamble for any JSON value, as a writer that skips the checks would produce. */
function preamble(h: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(h));
  const fixed = Buffer.alloc(PREAMBLE_FIXED);
  fixed.write(STREAM_MAGIC, 0, 'latin1');
  fixed.writeUInt16LE(STREAM_VERSION, 8);
  fixed.writeUInt32LE(json.length, 12);
  return Buffer.concat([fixed, json, createHash('sha256').update(fixed).update(json).digest()]);
}

/** Gives `bytes` in pieces of `piece` bytes, whatever is asked, like the daemon's socket channel. */
function chunked(bytes: Buffer, piece: number): ByteSource & { reads: number } {
  let off = 0;
  return {
    reads: 0,
    async read() {
      this.reads++;
      const out = bytes.subarray(off, off + piece);
      off += out.length;
      return out;
    },
  };
}

async function headerOf(h: unknown): Promise<StreamHeader> {
  return new StreamReader(chunked(preamble(h), 1 << 20)).preamble();
}

t.test('a header with every field well-formed is read back as written', async (t) => {
  t.same(await headerOf(header()), header());
});

t.test('a header written before consistency was carried is read without it', async (t) => {
  const h = header();
  delete h.snapshot.consistency;
  t.same(await headerOf(h), h);
});

t.test('a description of 1024 characters of two UTF-16 units each is read: counted as the engine counts it', async (t) => {
  const h = header();
  h.snapshot.description = '\u{1F600}'.repeat(1024);
  t.same(await headerOf(h), h);
});

t.test('timestamps on a leap day, at the last second of a day and with an offset are read', async (t) => {
  for (const at of ['2024-02-29T23:59:59Z', '2026-12-31T23:59:59.999999999-12:00', '2000-02-29T00:00:00+14:00']) {
    const h = header();
    h.snapshot.createdAt = at;
    t.same(await headerOf(h), h, at);
  }
});

t.test('each header field of the wrong type or shape is StreamCorrupt naming the field', async (t) => {
  const cases: Array<[string, (h: any) => void]> = [
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = 12345; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = 'yesterday'; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = '2026-02-30T00:00:00Z'; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = '2025-02-29T00:00:00Z'; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = '2026-13-01T00:00:00Z'; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = '2026-01-01T24:00:00Z'; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = '2026-01-01T00:60:00Z'; }],
    ['snapshot.createdAt', (h) => { h.snapshot.createdAt = '2026-01-01T00:00:00+24:00'; }],
    ['snapshot.description', (h) => { h.snapshot.description = { x: [1, 2] }; }],
    ['snapshot.description', (h) => { h.snapshot.description = 'x'.repeat(1025); }],
    ['snapshot.name', (h) => { h.snapshot.name = 7; }],
    ['snapshot.diskName', (h) => { h.snapshot.diskName = null; }],
    ['snapshot.id', (h) => { h.snapshot.id = 's-NOTHEX'; }],
    ['snapshot.diskId', (h) => { h.snapshot.diskId = 's-0123456789abcdef'; }],
    ['snapshot.parentId', (h) => { h.snapshot.parentId = 'monday'; }],
    ['snapshot.type', (h) => { h.snapshot.type = 'weekly'; }],
    ['snapshot.blockSize', (h) => { h.snapshot.blockSize = 1000; }],
    ['snapshot.logicalBytes', (h) => { h.snapshot.logicalBytes = 3 * B; }],
    ['snapshot.blockCount', (h) => { h.snapshot.blockCount = 4; }],
    ['snapshot.consistency', (h) => { h.snapshot.consistency = 'eventual'; }],
    ['base', (h) => { h.base = 'none'; }],
    ['base.viewSha256', (h) => { h.base = { id: 's-00112233445566ff', viewSha256: 'zz' }; }],
    ['exportedAt', (h) => { delete h.exportedAt; }],
  ];
  for (const [field, edit] of cases) {
    const h = header();
    edit(h);
    await t.rejects(headerOf(h), { code: 'StreamCorrupt', message: new RegExp(`header field ${field.replace('.', '\\.')} `) }, field);
  }
});

t.test('a negative size with no blocks is refused although ceil(-n / blockSize) is -0, which equals 0', async (t) => {
  const h = header();
  Object.assign(h.snapshot, { sizeBytes: -5, blockCount: 0, logicalBytes: 0 });
  await t.rejects(headerOf(h), { code: 'StreamCorrupt', message: /snapshot\.sizeBytes/ });
});

t.test('a size whose map could not be held is refused before the map is read', async (t) => {
  const h = header();
  const sizeBytes = Number.MAX_SAFE_INTEGER;
  Object.assign(h.snapshot, { sizeBytes, blockCount: Math.ceil(sizeBytes / B), logicalBytes: 0 });
  await t.rejects(headerOf(h), { code: 'StreamCorrupt', message: new RegExp(`snapshot\\.blockCount is not an integer from 0 to ${MAX_BLOCK_COUNT}`) });
});

t.test('a stream arriving in small pieces reads back exactly, map and blocks across piece boundaries', async (t) => {
  const parts: Buffer[] = [];
  const sink: ByteSink = { async write(p) { parts.push(...p.map((x) => Buffer.from(x))); } };
  const w = new StreamWriter(sink);
  const view = Buffer.alloc(3 * 32, 7);
  const data = [Buffer.alloc(B, 1), Buffer.alloc(100, 2)];
  await w.preamble(header());
  await w.map(view);
  for (const d of data) await w.block(createHash('sha256').update(d).digest(), d);
  await w.end();
  // 256 KiB pieces, as the socket channel delivers them; odd-sized ones so records straddle them.
  for (const piece of [256 * 1024, 99_991]) {
    const r = new StreamReader(chunked(Buffer.concat(parts), piece));
    await r.preamble();
    t.ok((await r.map(3)).equals(view), `map, ${piece}-byte pieces`);
    const counts = { blocks: 0, bytes: 0 };
    for (const d of data) {
      const rec = await r.next(B, counts);
      t.ok(rec?.data.equals(d), `block of ${d.length} bytes, ${piece}-byte pieces`);
      counts.blocks++;
      counts.bytes += d.length;
    }
    t.equal(await r.next(B, counts), null, 'the end record and final checksum verify');
  }
});

t.test('a file source never asks the file for more than it has left', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bsnap-stream-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'short.bsnap');
  writeFileSync(path, Buffer.alloc(1000, 9));
  const file = await open(path, 'r');
  t.teardown(() => file.close());
  const src = fileSource(file);
  // A header may claim a huge map: the read it causes must be bounded by the file, not by the claim.
  const first = await src.read(2 ** 31);
  t.equal(first.length, 1000);
  t.equal(first.buffer.byteLength < 2 ** 20, true, 'the buffer is sized by the file');
  t.equal((await src.read(2 ** 31)).length, 0, 'then the end');
});
