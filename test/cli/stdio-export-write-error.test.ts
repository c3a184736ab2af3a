/**
 * `snapshot export -o - > /dev/full`: stdout fails on the first chunk, which can arrive before
 * the daemon has answered snapshot.export. The error reported must be the write's (StreamClosed),
 * not the closed connection that the failed write itself causes.
 */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { BlocksnapError } from '../../src/errors';
import type { DaemonClient } from '../../src/daemon/client';
import { exportToStream } from '../../src/cli/stdio-streams';

/** A client whose snapshot.export answer is still pending when the first chunk arrives. */
function clientWithPendingExport(): DaemonClient {
  const fake = new EventEmitter() as EventEmitter & { call: unknown; close: unknown };
  let rejectPending: ((err: Error) => void) | null = null;
  fake.call = (method: string): Promise<unknown> => {
    if (method !== 'snapshot.export') return new Promise(() => undefined);
    return new Promise((_resolve, reject) => {
      rejectPending = reject;
      setImmediate(() => fake.emit('data', { event: 'data', stream: 'stdio', seq: 0, data: Buffer.alloc(16) }));
    });
  };
  fake.close = (): void => rejectPending?.(new BlocksnapError('DaemonUnavailable', 'the connection was closed by the client'));
  return fake as unknown as DaemonClient;
}

t.test('a stdout write error before snapshot.export is answered is reported as StreamClosed with the errno', async (t) => {
  const full = new Writable({
    write(_chunk, _enc, cb): void {
      cb(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
    },
  });
  const err = await exportToStream(clientWithPendingExport(), full, { snapshot: 's1' }, 'export s1').then(() => null, (e: unknown) => e);
  t.ok(err instanceof BlocksnapError, `a BlocksnapError: ${String(err)}`);
  t.equal((err as BlocksnapError).code, 'StreamClosed');
  t.match((err as BlocksnapError).message, /cannot write the stream: ENOSPC/);
});
