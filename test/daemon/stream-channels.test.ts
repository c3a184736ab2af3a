/**
 * Stream channels (src/daemon/stream-channels.ts) against a real engine: what a snapshot stream
 * through the socket carries, and the bounds its flow control holds on either side.
 */
import { readFileSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import type { DataEvent } from '../../src/daemon/protocol/messages';
import { STREAM_CHUNK_BYTES, STREAM_WINDOW_BYTES, StreamChannels } from '../../src/daemon/stream-channels';
import { BlocksnapError } from '../../src/errors';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage, MiB } from '../helpers/images';

const FIXED_NOW = new Date('2026-03-01T12:00:00.000Z');

async function withSnapshot(t: Test): Promise<{ engine: Engine; images: string; snapId: string }> {
  const dir = t.testdir();
  const images = join(dir, 'images');
  mkdirSync(images);
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], now: () => FIXED_NOW });
  t.teardown(() => engine.close());
  const img = makeImage(join(images, 'vm.img'), 24 * MiB);
  for (const i of [0, 1, 2, 4, 5]) fillBlock(img, i, 4 * MiB, `b${i}`);
  await engine.addDisk({ path: img, name: 'vm' });
  const s = await snapshot(engine, 'vm', 'one');
  return { engine, images, snapId: s.id };
}

t.test('a stream through a channel is byte for byte the file form', async (t) => {
  const { engine, images, snapId } = await withSnapshot(t);
  await finished(engine, engine.offsite.streams.startExport(snapId, join(images, 'one.bsnap')));
  const chunks: Buffer[] = [];
  const channels = new StreamChannels((e: DataEvent) => {
    chunks.push(Buffer.from(e.data));
    queueMicrotask(() => channels.ack('s', e.data.length));
  });
  const job = await finished(engine, engine.offsite.streams.startExport(snapId, channels.openOut('s')));
  t.ok(chunks.every((c) => c.length <= STREAM_CHUNK_BYTES), 'no chunk above the chunk size');
  t.ok(Buffer.concat(chunks).equals(readFileSync(join(images, 'one.bsnap'))), 'identical bytes');
  t.match(job.result, { path: null, blocks: 5 });
});

t.test('an export never has more than the window unacknowledged', async (t) => {
  const { engine, snapId } = await withSnapshot(t);
  const unacked: number[] = [];
  const channels = new StreamChannels((e) => { unacked.push(e.data.length); });
  const job = engine.offsite.streams.startExport(snapId, channels.openOut('s'));
  let most = 0;
  let total = 0;
  while (engine.getJob(job.id).state === 'running') {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r)); // let the job run until it blocks
    const outstanding = unacked.reduce((a, b) => a + b, 0);
    most = Math.max(most, outstanding);
    const oldest = unacked.shift();
    if (oldest !== undefined) { channels.ack('s', oldest); total += oldest; }
  }
  t.equal((await engine.waitJob(job.id)).state, 'succeeded');
  t.equal(most, STREAM_WINDOW_BYTES, 'the job filled the window, and went no further');
  t.ok(total > 4 * STREAM_WINDOW_BYTES, 'the stream is several windows long');
});

t.test('an import channel fails a client that ignores the window', async (t) => {
  const channels = new StreamChannels(() => undefined);
  const ch = channels.openIn('s');
  const chunk = Buffer.alloc(STREAM_CHUNK_BYTES, 1);
  const answers = Array.from({ length: STREAM_WINDOW_BYTES / STREAM_CHUNK_BYTES }, () => channels.data('s', chunk, false));
  answers.forEach((a) => a.catch(() => undefined));
  await t.rejects(channels.data('s', chunk, false), { code: 'InvalidArgument' }, 'one chunk beyond the window');
  await t.rejects(ch.read(1), { code: 'InvalidArgument' }, 'the channel is closed for the reader too');
  await t.rejects(answers[0]!, { code: 'InvalidArgument' }, 'queued chunks are dropped');
});

t.test('a connection that goes away ends the jobs of its channels', async (t) => {
  const { engine, snapId } = await withSnapshot(t);
  const channels = new StreamChannels(() => undefined); // never acknowledges
  const exp = engine.offsite.streams.startExport(snapId, channels.openOut('out'));
  const imp = engine.offsite.streams.startImport(channels.openIn('in'), 'vm');
  await new Promise((r) => setImmediate(r));
  channels.closeAll(new BlocksnapError('StreamClosed', 'the client disconnected'));
  t.match(await engine.waitJob(exp.id), { state: 'failed', error: { code: 'StreamClosed' } });
  t.match(await engine.waitJob(imp.id), { state: 'failed', error: { code: 'StreamClosed' } });
  t.match(await engine.deleteSnapshot(snapId), { id: snapId }, 'the export no longer pins the snapshot');
  t.throws(() => channels.openOut('later'), { code: 'StreamClosed' }, 'no channel opens on a closed connection');
});

t.test('an export whose client can send nothing more fails once it needs an acknowledgement', async (t) => {
  // A client that shut down its sending side can never acknowledge: the job would wait for ever.
  const { engine, snapId } = await withSnapshot(t);
  let sent = 0;
  const channels = new StreamChannels((e) => { sent += e.data.length; });
  const job = engine.offsite.streams.startExport(snapId, channels.openOut('s'));
  // Let the job run until it waits for credit: the window is (all but one chunk) full.
  while (sent <= STREAM_WINDOW_BYTES - STREAM_CHUNK_BYTES && engine.getJob(job.id).state === 'running') await new Promise((r) => setTimeout(r, 5));
  channels.inputEnded(new BlocksnapError('StreamClosed', 'the client shut down its side'));
  t.match(await engine.waitJob(job.id), { state: 'failed', error: { code: 'StreamClosed' } });
  t.ok(sent <= STREAM_WINDOW_BYTES, 'it sent what its credit allowed, no more');
});

t.test('a half-close fails an import the client has not ended, and spares one it has', async (t) => {
  const { engine, images, snapId } = await withSnapshot(t);
  await finished(engine, engine.offsite.streams.startExport(snapId, join(images, 'one.bsnap')));
  const bytes = readFileSync(join(images, 'one.bsnap'));
  await engine.deleteSnapshot(snapId);
  const cut = new StreamChannels(() => undefined);
  const unended = engine.offsite.streams.startImport(cut.openIn('s'), 'vm');
  void cut.data('s', bytes.subarray(0, STREAM_CHUNK_BYTES), false).catch(() => undefined);
  cut.inputEnded(new BlocksnapError('StreamClosed', 'the client shut down its side'));
  t.match(await engine.waitJob(unended.id), { state: 'failed', error: { code: 'StreamClosed' } }, 'no end will come');
  const whole = new StreamChannels(() => undefined);
  const ended = engine.offsite.streams.startImport(whole.openIn('s'), 'vm');
  for (let off = 0; off < bytes.length; off += STREAM_CHUNK_BYTES) await whole.data('s', bytes.subarray(off, off + STREAM_CHUNK_BYTES), false);
  void whole.data('s', undefined, true);
  whole.inputEnded(new BlocksnapError('StreamClosed', 'the client shut down its side'));
  t.match(await engine.waitJob(ended.id), { state: 'succeeded', result: { snapshotId: snapId } }, 'its end came before the half-close');
});

t.test('a connection that goes away spares an import whose end has arrived', async (t) => {
  // A client may send a whole stream and die before it reads the answer: the bytes that arrived
  // are the same as if it had stayed, so they are committed the same way.
  const { engine, images, snapId } = await withSnapshot(t);
  await finished(engine, engine.offsite.streams.startExport(snapId, join(images, 'one.bsnap')));
  const bytes = readFileSync(join(images, 'one.bsnap'));
  await engine.deleteSnapshot(snapId);
  const channels = new StreamChannels(() => undefined);
  const job = engine.offsite.streams.startImport(channels.openIn('s'), 'vm');
  const last = Math.floor((bytes.length - 1) / STREAM_CHUNK_BYTES) * STREAM_CHUNK_BYTES;
  for (let off = 0; off < last; off += STREAM_CHUNK_BYTES) await channels.data('s', bytes.subarray(off, off + STREAM_CHUNK_BYTES), false);
  // The last chunk and the end are queued, not yet taken by the job, when the connection goes.
  const queued = channels.data('s', bytes.subarray(last), true);
  channels.closeAll(new BlocksnapError('StreamClosed', 'the client disconnected'));
  t.match(await engine.waitJob(job.id), { state: 'succeeded', result: { snapshotId: snapId } });
  await queued;
  t.throws(() => channels.openIn('later'), { code: 'StreamClosed' }, 'no channel opens on a closed connection');
});

t.test('an import whose client sends nothing for the stall limit fails StreamStalled, committing nothing', async (t) => {
  const { engine, images, snapId } = await withSnapshot(t);
  await finished(engine, engine.offsite.streams.startExport(snapId, join(images, 'one.bsnap')));
  const bytes = readFileSync(join(images, 'one.bsnap'));
  await engine.deleteSnapshot(snapId);
  const channels = new StreamChannels(() => undefined, () => undefined, 50);
  const job = engine.offsite.streams.startImport(channels.openIn('s'), 'vm');
  // The first block (4 MiB) whole, then nothing: the import holds the store lock and waits.
  for (let off = 0; off < 5 * MiB; off += STREAM_CHUNK_BYTES) await channels.data('s', bytes.subarray(off, off + STREAM_CHUNK_BYTES), false);
  t.match(await engine.waitJob(job.id), { state: 'failed', error: { code: 'StreamStalled', message: /sent nothing for 0.05 s/ } });
  t.same(engine.listSnapshots('vm'), [], 'nothing committed');
  await finished(engine, engine.startGc()); // and the store lock is free
});

t.test('the stall limit runs only while the import waits for the client', async (t) => {
  const channels = new StreamChannels(() => undefined, () => undefined, 20);
  const ch = channels.openIn('s');
  // Sent before the job asks for it, and left unread far longer than the limit (the job busy,
  // or waiting for a lock): the client was not late.
  const taken = channels.data('s', Buffer.from('abc'), false);
  await new Promise((r) => setTimeout(r, 100));
  t.same(await ch.read(3), Buffer.from('abc'));
  await taken;
  await t.rejects(ch.read(3), { code: 'StreamStalled' }, 'once it waits, the limit runs');
});
