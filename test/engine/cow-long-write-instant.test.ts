/**
 * A snapshot of a served copy-on-write disk falls between two NBD requests, also when one of them
 * is a WRITE longer than the advertised 4 MiB (a client that negotiated no block sizes, such as
 * the Linux kernel's, may send 32 MiB). Such a write is applied a piece at a time; before, a
 * snapshot could fall between two pieces and hold half of a request never acknowledged. A client
 * gone mid-payload is another matter: the pieces it sent stay written, as on a disk that lost
 * power mid-write, and a snapshot holds them.
 */
import t, { type Test } from 'tap';
import * as C from '../../src/nbd/constants';
import { cloned, readAll, served } from '../helpers/cow';
import { engineWithSnapshot, finished } from '../helpers/engine';
import { pattern } from '../helpers/images';
import { attached, startServer } from '../nbd/fixtures/serve';
import type { Snapshot } from '../../src/engine/types';
import type { NbdBackend } from '../../src/nbd/backend';

const BS = 64 * 1024;
const MiB = 1024 * 1024;

/** Copy-on-write disk `c`, served, with one NBD client attached. */
async function servedOverNbd(t: Test) {
  const { engine, images } = await engineWithSnapshot(t, { blockSize: BS, blocks: 160, filled: 1, disk: 'vm', snapshot: 'base' });
  await engine.cloneCow('base', 'c');
  const backend = await served(engine, 'c');
  const { socketPath } = await startServer(t, { c: backend });
  return { engine, images, backend, client: await attached(socketPath, 'c') };
}

/** Waits until the disk's first bytes are `first`'s: its first piece is written. */
async function pieceWritten(backend: NbdBackend, first: Buffer): Promise<void> {
  const head = Buffer.alloc(4096);
  for (;;) {
    await backend.readInto(0, head.length, head, 0);
    if (head.equals(first.subarray(0, head.length))) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('a snapshot taken while an 8 MiB write is half applied holds all of it', async (t) => {
  const { engine, images, backend, client } = await servedOverNbd(t);
  t.teardown(() => client.close());

  const first = pattern('first-half', 4 * MiB);
  const second = pattern('second-half', 4 * MiB);
  client.request(C.NBD_CMD_WRITE, 0, 8 * MiB, 0, 1n, first);
  // Its first piece is in the disk; the second is not sent yet.
  await pieceWritten(backend, first);
  const job = engine.startSnapshot('c', { name: 'mid' });
  const ended = engine.waitJob(job.id);
  // Time for the snapshot to reach its instant, had nothing held it.
  await Promise.race([ended, new Promise((r) => setTimeout(r, 1500))]);
  client.write(second);
  t.same(await client.simpleReply(), { error: 0, handle: 1n }, 'the write is acknowledged');
  const snap = (await finished(engine, job)).result as Snapshot;
  const content = await cloned(engine, images, snap, 'mid.raw');
  t.ok(content.subarray(0, 8 * MiB).equals(Buffer.concat([first, second])), 'the snapshot holds the whole write, not its first piece alone');
});

t.test('a snapshot after a client died mid-payload of an 8 MiB write holds the pieces it sent', async (t) => {
  const { engine, images, backend, client } = await servedOverNbd(t);
  const before = await readAll(backend);

  const first = pattern('first-half', 4 * MiB);
  client.request(C.NBD_CMD_WRITE, 0, 8 * MiB, 0, 1n, first);
  await pieceWritten(backend, first);
  const job = engine.startSnapshot('c', { name: 'torn' });
  client.close();
  const snap = (await finished(engine, job)).result as Snapshot;
  const content = await cloned(engine, images, snap, 'torn.raw');
  t.ok(content.subarray(0, 4 * MiB).equals(first), 'the piece that arrived is in the snapshot');
  t.ok(content.subarray(4 * MiB, 8 * MiB).equals(before.subarray(4 * MiB, 8 * MiB)), 'the rest of the range is as it was');
});
