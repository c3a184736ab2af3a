/**
 * An out-of-range request's error message quotes the offset the client sent, whole: offsets past
 * 2^53 are clamped for arithmetic, never in what the client or the log is told.
 */
import t from 'tap';
import * as C from '../../src/nbd/constants';
import { MemoryBackend } from './fixtures/memory-backend';
import { attached, chunk, startServer } from './fixtures/serve';

for (const offset of [2n ** 64n - 1n, 2n ** 53n + 1n]) {
  t.test(`a read at ${offset} is refused with that offset in the message`, async (t) => {
    const { socketPath } = await startServer(t, { ro: new MemoryBackend(1024 * 1024, false) });
    const c = await attached(socketPath, 'ro', true);
    c.request(C.NBD_CMD_READ, offset, 1, 0, 1n);
    const r = await chunk(c);
    t.equal(r.type, C.NBD_REPLY_TYPE_ERROR);
    t.equal(r.data.readUInt32BE(0), C.NBD_EINVAL);
    const message = r.data.subarray(6, 6 + r.data.readUInt16BE(4)).toString();
    t.match(message, `range ${offset}+1 lies beyond the end of the export`);
    c.close();
  });
}
