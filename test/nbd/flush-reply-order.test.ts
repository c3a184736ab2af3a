/**
 * A FLUSH is answered only once the backend's flush has finished: the reply is the client's
 * promise that what it wrote before is durable, so a reply sent while the flush still runs would
 * promise what a crash then could take back.
 */
import t from 'tap';
import * as C from '../../src/nbd/constants';
import { MemoryBackend } from './fixtures/memory-backend';
import { attached, startServer } from './fixtures/serve';

/** A flush that waits until released. */
class GatedFlushBackend extends MemoryBackend {
  release: () => void = () => {};
  private readonly gate: Promise<void>;

  constructor(size: number) {
    super(size);
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  override async flush(): Promise<void> {
    await this.gate;
    return super.flush();
  }
}

t.test('a FLUSH is answered only after the backend\'s flush finished', async (t) => {
  const backend = new GatedFlushBackend(1024 * 1024);
  const s = await startServer(t, { rw: backend });
  const c = await attached(s.socketPath, 'rw');
  // A read sent right behind the flush is answered while the flush is held: the first reply to
  // come back must be the read's, or the flush was answered before it finished.
  c.request(C.NBD_CMD_FLUSH, 0, 0, 0, 1n);
  c.request(C.NBD_CMD_READ, 0, 4096, 0, 2n);
  t.same(await c.simpleReply(), { error: 0, handle: 2n }, 'the read is answered first');
  await c.read(4096);
  t.equal(backend.flushes, 0, 'the flush is still held');
  backend.release();
  t.same(await c.simpleReply(), { error: 0, handle: 1n }, 'then the flush');
  t.equal(backend.flushes, 1);
  c.close();
});
