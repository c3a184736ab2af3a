/**
 * A storage that accepts connections and then never answers (a stopped gateway, a wedged OSD):
 * every request is abandoned after its timeout and retried, and the job or command fails in
 * bounded time with RemoteUnreachable instead of waiting for it forever. The storage here is a
 * real TCP server that accepts and stays silent; the timeouts are shortened through the engine's
 * replication options.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Engine } from '../../src/engine';
import { DEFAULT_RETRY } from '../../src/remote/retry';
import { snapshot } from '../helpers/engine';
import { fillBlock, makeImage } from '../helpers/images';
import { KiB64 } from '../helpers/model';

const s3Timeouts = { connectMs: 1000, idleMs: 150, requestMs: 2000 };

/** A server that accepts every connection and never sends a byte; counts the connections. */
async function silentServer(t: Test): Promise<{ endpoint: string; connections: () => number }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  const { port } = server.address() as { port: number };
  return { endpoint: `http://127.0.0.1:${port}`, connections: () => connections };
}

async function engineOn(t: Test, endpoint: string): Promise<{ engine: Engine; images: string; warnings: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'blocksnap-stalled-'));
  const images = join(dir, 'images');
  mkdirSync(images);
  const warnings: string[] = [];
  const log = { debug() {}, info() {}, warn: (_o: object, msg?: string) => { warnings.push(msg ?? ''); }, error() {} };
  const engine = await Engine.open({ dataDir: join(dir, 'data'), imageRoots: [images], blockSize: KiB64, threads: 1, logger: log, replication: { s3Timeouts } });
  t.teardown(async () => {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const credentialsFile = join(dir, 'credentials');
  writeFileSync(credentialsFile, 'aws_access_key_id = a\naws_secret_access_key = b\n', { mode: 0o600 });
  engine.offsite.replication.addRemote({ name: 'off', endpoint, bucket: 'stalled', credentialsFile });
  return { engine, images, warnings };
}

t.test('remote check gives up on a storage that never answers, after every attempt timed out', async (t) => {
  const server = await silentServer(t);
  const { engine } = await engineOn(t, server.endpoint);
  await t.rejects(engine.offsite.replication.checkRemote('off'), { code: 'RemoteUnreachable', message: /nothing received for 150 ms/ });
  t.equal(server.connections(), DEFAULT_RETRY.attempts, 'each attempt on a connection of its own, the stalled one abandoned');
});

t.test('a replication to a storage that never answers fails, so that the next run can try again', async (t) => {
  const server = await silentServer(t);
  const { engine, images } = await engineOn(t, server.endpoint);
  const path = makeImage(join(images, 'vm.raw'), 4 * KiB64);
  fillBlock(path, 0, KiB64, 'vm-0');
  const d = await engine.addDisk({ path, name: 'vm' });
  const s = await snapshot(engine, d.id);
  const job = await engine.waitJob(engine.offsite.replication.startReplicate(s.id, 'off').id);
  t.match(job, { state: 'failed', error: { code: 'RemoteUnreachable' } });
});

t.test('a restore from a storage that never answers fails', async (t) => {
  const server = await silentServer(t);
  const { engine, images } = await engineOn(t, server.endpoint);
  const job = await engine.waitJob(engine.offsite.remoteRestore.startRestore('off', 's-0000000000000000', join(images, 'out.raw')).id);
  t.match(job, { state: 'failed', error: { code: 'RemoteUnreachable' } });
});
