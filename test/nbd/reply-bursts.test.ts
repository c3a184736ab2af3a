/**
 * Requests that finish together (a batch of writes completing at once, as the volume's batches
 * do) have their replies sent in one socket write, not one system call each; and each reply is
 * still whole and right.
 */
import t, { type Test } from 'tap';
import { Socket } from 'node:net';
import * as C from '../../src/nbd/constants';
import { MemoryBackend } from './fixtures/memory-backend';
import { attached, startServer } from './fixtures/serve';

/** Writes wait until released all at once: a burst of completions. */
class GatedBackend extends MemoryBackend {
  waiting = 0;
  private gate: Promise<void>;
  release: () => void = () => {};

  constructor(size: number) {
    super(size);
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  override async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.waiting++;
    await this.gate;
    return super.write(offset, data, fua);
  }
}

/**
 * Counts the socket writes (one per system call the stream asks of its handle) made in this
 * process until stop(), which restores the stream's own methods and returns the counts.
 */
function countSocketWrites(t: Test): { stop(): { writes: number; buffers: number } } {
  const seen = { writes: 0, buffers: 0 };
  const proto = Socket.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const write = proto._write!;
  const writev = proto._writev!;
  proto._write = function (this: Socket, ...args: unknown[]) {
    seen.writes++;
    seen.buffers++;
    return write.apply(this, args);
  };
  proto._writev = function (this: Socket, chunks: unknown, ...rest: unknown[]) {
    seen.writes++;
    seen.buffers += (chunks as unknown[]).length;
    return writev.call(this, chunks, ...rest);
  };
  const stop = (): { writes: number; buffers: number } => {
    proto._write = write;
    proto._writev = writev;
    return { ...seen };
  };
  t.teardown(stop);
  return { stop };
}

t.test('16 writes that complete together are answered in one socket write', async (t) => {
  const backend = new GatedBackend(1024 * 1024);
  const { socketPath } = await startServer(t, { vm: backend });
  const c = await attached(socketPath, 'vm');
  for (let i = 0; i < 16; i++) c.request(C.NBD_CMD_WRITE, i * 4096, 4096, 0, BigInt(i + 1), Buffer.alloc(4096, i + 1));
  while (backend.waiting < 16) await new Promise((r) => setTimeout(r, 5));

  // Asserted only once counting stops: tap's own output goes through a socket of this process too.
  const counting = countSocketWrites(t);
  backend.release();
  const replies = [];
  for (let i = 0; i < 16; i++) replies.push(await c.simpleReply());
  const seen = counting.stop();
  t.ok(replies.every((r) => r.error === 0), 'every write succeeded');
  t.equal(new Set(replies.map((r) => r.handle)).size, 16, 'every request answered once');
  t.same(seen, { writes: 1, buffers: 16 }, 'the 16 replies left in one write of 16 buffers');
  for (let i = 0; i < 16; i++) t.equal(backend.data[i * 4096], i + 1, `write ${i + 1} landed`);
  c.close();
});
