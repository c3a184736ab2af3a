/**
 * A daemon (a real engine behind the socket server) fails an import whose client stays connected
 * but sends nothing for `streamStallMs` (ConnectionLimits), as an ssh link that hangs would: from
 * its first block the import holds the shared store lock, which a gc, and every snapshot behind
 * that gc, would wait for as long as the client does.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { DaemonClient } from '../../src/daemon/client';
import { DEFAULT_LIMITS } from '../../src/daemon/connection';
import { DEFAULT_MAX_FRAME_BYTES } from '../../src/daemon/protocol/frame';
import { DaemonServer } from '../../src/daemon/server';
import { STREAM_CHUNK_BYTES } from '../../src/daemon/stream-channels';
import { Engine } from '../../src/engine';
import type { Job } from '../../src/engine/types';
import { finished, snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';

const BS = 64 * 1024;

t.test('an import whose client sends nothing for the stall limit fails StreamStalled and frees the store lock', async (t) => {
  const dir = t.testdir();
  const images = join(dir, 'images');
  mkdirSync(images);
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], blockSize: BS });
  t.teardown(() => engine.close());
  const img = makeImage(join(images, 'vm.raw'), 16 * BS);
  for (let i = 0; i < 16; i++) fillBlock(img, i, BS, `vm-${i}`);
  await engine.addDisk({ path: img, name: 'vm' });
  const s = await snapshot(engine, 'vm', 's1');
  await finished(engine, engine.offsite.streams.startExport(s.id, join(images, 's1.bsnap')));
  const bytes = readFileSync(join(images, 's1.bsnap'));
  await engine.deleteSnapshot(s.id);

  // A socket's path must be short (108 bytes): not under the test's directory.
  const socketDir = mkdtempSync(join(tmpdir(), 'bsnap-'));
  t.teardown(() => rmSync(socketDir, { recursive: true, force: true }));
  const socketPath = join(socketDir, 'd.sock');
  const server = new DaemonServer(engine, { version: '0.0.0-test', build: 'test', pid: process.pid, startedAt: new Date().toISOString() }, {
    socketPath, socketMode: 0o600, maxConnections: 10, maxConnectionsPerUser: 10,
    limits: { ...DEFAULT_LIMITS, maxFrameBytes: DEFAULT_MAX_FRAME_BYTES, streamStallMs: 200 },
  }, pino({ level: 'silent' }));
  await server.listen();
  t.teardown(async () => { server.stopAccepting(); await server.closeConnections(); });
  const client = await DaemonClient.connect({ socketPath });
  t.teardown(() => client.close());

  const job = await client.call<Job>('snapshot.import', { disk: 'vm', stream: 's', wait: false });
  // Several whole blocks, then the client goes quiet without closing anything.
  await client.call('stream.data', { stream: 's', data: bytes.subarray(0, STREAM_CHUNK_BYTES) });
  const done = await client.call<Job>('job.wait', { job: job.id });
  t.match(done, { state: 'failed', error: { code: 'StreamStalled', message: /the client sent nothing for 0.2 s/ } });
  t.same(engine.listSnapshots('vm'), [], 'nothing committed');
  await finished(engine, engine.startGc());
  t.pass('a gc runs afterwards: the store lock is free');
});
